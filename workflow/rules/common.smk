# Helpers shared by the rules: what each step is given of the config.
import json
import os


def settings(*sections):
    """The config sections a step depends on, as JSON for the script's --settings.

    Passing only these (as a param) makes Snakemake rerun a step exactly when they change.
    """
    return literal(json.dumps(hepflows_config.subset(config, sections), sort_keys=True))


def literal(text):
    """A param of this exact text: a function, so that Snakemake does not read the braces of
    a LaTeX label ("$p_{T}$") as wildcards."""
    return lambda wildcards: text


FEATURE_SECTIONS = hepflows_config.FEATURE_SECTIONS
PREPROCESS_SECTIONS = hepflows_config.PREPROCESS_SECTIONS
MODEL_SECTIONS = hepflows_config.MODEL_SECTIONS


# The folder of this file, as Snakemake knows it: a local path, or a remote one when this
# workflow is loaded as a `module` from a git repository (workflow.basedir would then be the
# outer workflow's folder, where there are no scripts).
RULES_DIR = workflow.current_basedir


def script(name):
    """Path of scripts/<name>.py, relative to the working directory (any --directory works).

    Found relative to this file, not to the main Snakefile, so that the workflow also runs as a
    module of another; a remote script is fetched into Snakemake's source cache.
    """
    source = RULES_DIR.join(f"../../scripts/{name}.py")
    if getattr(source, "is_local", False):
        # the real file, beside the package's src/ (its fallback import for conda envs)
        return os.path.relpath(os.path.normpath(source.get_path_or_uri(secret_free=False)))
    return workflow.sourcecache.get_path(source)


# A grid of models (config `models:`): each model's train, sample and validate jobs write under
# results/<run>/models/<model>/; without a grid the one model's outputs stay under results/<run>/.
GRID = hepflows_config.model_names(config)
VARIANTS = {name: hepflows_config.model_variant(config, name) for name in GRID}
MODEL_DIR = f"{RESULTS}/{layout.MODELS}/{{model}}" if GRID else RESULTS


# Every path below comes from hepflows.layout, the one map of results/<run>/.
def run_path(key):
    """A file of the run (shared by the models of a grid), from layout.RUN_FILES."""
    return f"{RESULTS}/{layout.RUN_FILES[key]}"


def model_path(key):
    """A file of the job's model, from layout.MODEL_FILES (with {model} in a grid)."""
    return f"{MODEL_DIR}/{layout.MODEL_FILES[key]}"


def run_log(step, job=None):
    return f"{RESULTS}/{layout.log(step, job)}"


def run_benchmark(step, job=None):
    return f"{RESULTS}/{layout.benchmark(step, job)}"


def model_log(step, job=None):
    return f"{MODEL_DIR}/{layout.log(step, job)}"


def model_benchmark(step, job=None):
    return f"{MODEL_DIR}/{layout.benchmark(step, job)}"
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


# The amplification (amplification.smk) and what validate leaves to it.
AMPLIFICATION = config["validation"]["amplification"]
TRUTH = run_path("truth") if config["data"]["source"] == "generator" else run_path("test")


def truth_settings():
    """What the truth depends on: the generate step's sections and the truth's size."""
    cfg = hepflows_config.subset(config, ("seed", "data"))
    cfg["validation"] = {"amplification": {"truth_events": AMPLIFICATION["truth_events"]}}
    return json.dumps(cfg, sort_keys=True)


def amplification_settings():
    """What the measurement depends on: the features, the seed and its own settings only."""
    cfg = hepflows_config.subset(config, ("seed", *FEATURE_SECTIONS, "labels", "data"))
    cfg["validation"] = {"amplification": AMPLIFICATION}
    return literal(json.dumps(cfg, sort_keys=True))


def amplification_sample():
    """The generated events measured: the whole sample (its shards when they are not merged)."""
    if SAMPLE_SHARDS == 1 or SAMPLING["merge"]:
        return GENERATED
    return expand(SAMPLE_SHARD, shard=range(SAMPLE_SHARDS), allow_missing=True)


def amplification_outputs():
    """Every model's amplification, when validation.amplification.enabled."""
    return per_model(model_path("amplification")) if AMPLIFICATION["enabled"] else []


def validate_settings():
    """What validate depends on: the amplification's settings are its own step's (amplification.smk)."""
    cfg = hepflows_config.subset(
        config, ("seed", *FEATURE_SECTIONS, "labels", "data", "preprocess", "validation", "plots")
    )
    cfg["validation"].pop("amplification", None)
    return literal(json.dumps(cfg, sort_keys=True))


# The refine step (refine.smk) and what validate is given of it.
REFINE = config["refine"]["enabled"]
REFINE_MC = run_path("refine_mc") if config["data"]["source"] == "generator" else run_path("train")


def check_refine():
    """Raise WorkflowError naming the key when refine cannot run as configured."""
    if REFINE and SAMPLE_SHARDS > 1:
        raise WorkflowError(
            "invalid configuration: key refine.enabled: needs sampling.shards 1 (the raw and "
            f"the reweighted verdicts must judge the same events; got {SAMPLE_SHARDS} shards)"
        )


def refine_draw_settings(wildcards):
    """What the classifier's draw depends on: the sample's sections and its own size."""
    cfg = json.loads(sample_settings(wildcards))
    cfg["refine"] = {"generated_events": config["refine"]["generated_events"]}
    return json.dumps(cfg, sort_keys=True)


def refine_mc_settings():
    """What the refine MC depends on: the generate step's sections, its size and the truth's
    (whose range it must not reach)."""
    cfg = json.loads(truth_settings())
    cfg["refine"] = {"mc_events": config["refine"]["mc_events"]}
    return json.dumps(cfg, sort_keys=True)


def refine_outputs():
    """Every model's weighted sample and its amplification, when refine.enabled."""
    if not REFINE:
        return []
    keys = ["refined", *(["reweighted_amplification"] if AMPLIFICATION["enabled"] else [])]
    return [path for key in keys for path in per_model(model_path(key))]


# What validate is given of the refine step (nothing when it is off).
REFINE_VALIDATE_INPUTS = (
    {"reweighted": model_path("refined"), "refine_report": model_path("refine_report")}
    if REFINE
    else {}
)
REFINE_VALIDATE_OUTPUTS = (
    {
        "reweighted": model_path("reweighted_metrics"),
        "refine_comparison": report(
            model_path("refine_comparison"),
            caption="../report/refine.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
    }
    if REFINE
    else {}
)


def refine_validate_arguments(wildcards, input):
    return (
        f" --reweighted {input.reweighted} --refine-report {input.refine_report}" if REFINE else ""
    )
