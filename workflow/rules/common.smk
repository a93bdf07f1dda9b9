# Helpers shared by the rules: what each step is given of the config.
import json
import os


def settings(*sections):
    """The config sections a step depends on, as JSON for the script's --settings.

    Passing only these (as a param) makes Snakemake rerun a step exactly when they change.
    """
    return json.dumps(hepflows_config.subset(config, sections), sort_keys=True)


PREPROCESS_SECTIONS = hepflows_config.PREPROCESS_SECTIONS
MODEL_SECTIONS = hepflows_config.MODEL_SECTIONS


def script(name):
    """Path of scripts/<name>.py, relative to the working directory (any --directory works)."""
    return os.path.relpath(os.path.join(workflow.basedir, "scripts", f"{name}.py"))
