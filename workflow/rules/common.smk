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


# A grid of models (config `models:`): each model's train, sample and validate jobs write under
# results/<run>/models/<model>/; without a grid the one model's outputs stay under results/<run>/.
GRID = hepflows_config.model_names(config)
VARIANTS = {name: hepflows_config.model_variant(config, name) for name in GRID}
MODEL_DIR = f"{RESULTS}/models/{{model}}" if GRID else RESULTS
# report entries of a grid are grouped by model
BY_MODEL = {"subcategory": "{model}"} if GRID else {}

if GRID:

    wildcard_constraints:
        model="|".join(GRID),


def model_config(wildcards):
    """The config of the job's model: its grid variant, or the config itself."""
    return VARIANTS[wildcards.model] if GRID else config


def model_settings(*sections):
    """Like settings(), for the job's model of the grid (a function of the job's wildcards)."""
    return lambda wildcards: json.dumps(
        hepflows_config.subset(model_config(wildcards), sections), sort_keys=True
    )


def per_model(pattern):
    """``pattern`` (with {model} when there is a grid) for every model of the run."""
    return expand(pattern, model=GRID, allow_missing=True) if GRID else [pattern]
