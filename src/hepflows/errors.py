"""Errors raised for bad input: they always name the file and the place that is wrong."""


class InputError(ValueError):
    """Bad input data or configuration.

    The message names the file (or config key), the place inside it (row, column, branch)
    and what was expected, so a user can fix it without reading code.
    """


class ResourceError(RuntimeError):
    """The machine could not hold an output: a full disk or quota, a read-only or missing
    folder, no permission.  The message names the output and the cause; nothing partial is left
    (every output is written atomically)."""


class Interrupted(RuntimeError):
    """A step stopped on SIGTERM/SIGINT; unfinished outputs were removed (training saved a
    checkpoint first): rerun the step to go on."""
