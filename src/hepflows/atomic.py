"""Write-then-rename: an output file either exists whole or not at all.

Every output of the project (ROOT, JSON, CSV, HTML, figures, checkpoints) goes through
:class:`AtomicFile`: written to a temporary file beside its target, given the mode an ordinary
``open(path, "w")`` would give it (0666 less the umask, so that colleagues on a shared disk can
read it), and renamed into place only when complete.  ``tempfile.mkstemp`` alone would leave
every output private (0600).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hepflows.errors import ResourceError

#: The errors of the machine rather than of the program: each becomes a :class:`ResourceError`.
RESOURCE_ERRNOS = frozenset(
    {
        errno.ENOSPC,  # disk full
        errno.EDQUOT,  # quota exceeded
        errno.EFBIG,  # file too large for the file system
        errno.EROFS,  # read-only file system
        errno.EACCES,  # no permission
        errno.EPERM,
        errno.ENOENT,  # a folder vanished (or was never there)
        errno.ENOTDIR,  # a file where a folder should be
    }
)


def resource_error(err: BaseException, *targets: str | Path) -> ResourceError | None:
    """A :class:`ResourceError` naming the output(s) ``targets`` and the cause, when ``err`` is
    an :class:`OSError` of :data:`RESOURCE_ERRNOS` met while writing them; else None.

    An error that names a file (``err.filename``) counts only when that file is one of the
    outputs, a temporary file beside one, or a folder above one: an input that cannot be read
    inside a writer's block stays what it was.
    """
    if not isinstance(err, OSError) or err.errno not in RESOURCE_ERRNOS:
        return None
    paths = [Path(t) for t in targets]
    if err.filename is not None:
        named = Path(os.fsdecode(err.filename))
        if not any(named == p or named.parent == p.parent or named in p.parents for p in paths):
            return None
    cause = err.strerror or os.strerror(err.errno or 0)
    code = errno.errorcode.get(err.errno or 0, "")
    where = ", ".join(map(str, paths))
    return ResourceError(
        f"{cause} while writing {where} ({code}); nothing was left there. Free space or fix "
        "the folder (or write elsewhere), then rerun"
    )


def current_umask() -> int:
    """The process umask, read without changing it where the system allows.

    ``os.umask`` can only be read by setting it; between the two calls another thread (the
    sampling writer, say) would create files with the wrong mode, so Linux's /proc is asked first.
    """
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temporary file beside ``path``: :meth:`publish` renames it to ``path``, :meth:`discard`
    deletes it.

    The two steps are separate so that several files can be committed together (all of a
    conversion's outputs or none); :func:`atomic_path` is the one-file form.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(
                dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as err:
            if (resource := resource_error(err, self.path)) is not None:
                raise resource from None
            raise
        os.close(fd)
        self.tmp: Path | None = Path(tmp)

    def publish(self) -> None:
        """Give the finished file the umask's mode and rename it to its final name."""
        if self.tmp is None:
            raise RuntimeError(f"{self.path}: already published or discarded")
        # The mode is set last: a writer may have replaced the temporary file by a new one.
        os.chmod(self.tmp, 0o666 & ~current_umask())
        os.replace(self.tmp, self.path)
        self.tmp = None

    def discard(self) -> None:
        """Delete the temporary file (if it is still there)."""
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)
            self.tmp = None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place if the block succeeds.

    On any exception (KeyboardInterrupt included) the temporary file is removed and the
    exception propagates, so a reader never sees a half-written ``path``.
    """
    out = AtomicFile(path)
    assert out.tmp is not None
    try:
        yield out.tmp
        out.publish()
    except BaseException as err:
        out.discard()
        if (resource := resource_error(err, path)) is not None:
            raise resource from None
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
