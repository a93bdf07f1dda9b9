# Shards and merges: which files the sharded steps write, which ones each merge reads, and the
# checks that fail at parse time (naming the key) when a configuration cannot be cut as asked.
# Functions only: the rules live with their stage (data.smk, sample.smk).
import math

from hepflows.shards import shard_ranges


DATA_SHARDS = config["data"]["shards"]
DATA_SHARD = run_path("data_shard")
DATA_FILES = {split: run_path(split) for split in ("train", "val", "test")}

SAMPLING = config["sampling"]
SAMPLE_SHARDS = SAMPLING["shards"]
SAMPLE_SHARD = model_path("sample_shard")
GENERATED = model_path("generated")


def check_shards():
    """Raise WorkflowError naming the key when data.shards or sampling.shards cannot be cut."""
    if DATA_SHARDS > 1 and config["data"]["source"] != "generator":
        raise WorkflowError(
            "invalid configuration: key data.shards: only source generator is sharded; "
            f"{config['data']['source']} is read in one stream"
        )
    try:
        for split, n in config["data"]["events"].items():
            shard_ranges(n, DATA_SHARDS, key=f"data.shards (split {split})")
        shard_ranges(SAMPLING["events"], SAMPLE_SHARDS, SAMPLING["chunk_size"], key="sampling.shards")
    except InputError as err:
        raise WorkflowError(f"invalid configuration: {err}")
    bad = [k for k in SAMPLING["validate_shards"] or [] if k >= SAMPLE_SHARDS]
    if bad:
        raise WorkflowError(
            f"invalid configuration: key sampling.validate_shards: {bad} not in 0..{SAMPLE_SHARDS - 1}"
        )


def data_shards(wildcards):
    """The shard files of one split, in order."""
    return expand(DATA_SHARD, split=wildcards.split, shard=range(DATA_SHARDS))


def generate_arguments(wildcards, output):
    """The generate script's outputs: the three splits, or one shard of one split."""
    if DATA_SHARDS == 1:
        return " ".join(f"--{split} {output[split]}" for split in DATA_FILES)
    return f"--split {wildcards.split} --shard {wildcards.shard} --out {output.shard}"


def sample_settings(wildcards):
    """What a sample job depends on: how the sample is merged or validated changes no event,
    so those keys are left out, and changing them reruns no shard."""
    cfg = hepflows_config.subset(model_config(wildcards), (*MODEL_SECTIONS, "sampling"))
    for key in ("merge", "validate_shards"):
        cfg["sampling"].pop(key)
    return json.dumps(cfg, sort_keys=True)


def validation_shards():
    """Shard files validation reads (sampling.validate_shards, default all of them), in order."""
    chosen = SAMPLING["validate_shards"] or range(SAMPLE_SHARDS)
    return expand(SAMPLE_SHARD, shard=chosen, allow_missing=True)


def validation_share():
    """Events validation takes from each of its shards: an equal share of validation.max_events."""
    return math.ceil(config["validation"]["max_events"] / len(validation_shards()))


def validation_sample():
    """The generated events validation reads: the sample, or a share of each chosen shard."""
    return GENERATED if SAMPLE_SHARDS == 1 else model_path("validation_sample")


def sample_outputs():
    """The final sampling outputs of every model: the joined sample, or only the shards."""
    if SAMPLE_SHARDS == 1 or SAMPLING["merge"]:
        return per_model(GENERATED)
    return per_model(expand(SAMPLE_SHARD, shard=range(SAMPLE_SHARDS), allow_missing=True))


check_shards()
