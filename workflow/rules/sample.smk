# Generate N events with the trained flow, streamed to ROOT in chunks: as one job, or as
# sampling.shards jobs of whole chunks joined by merge_samples (the same events either way).
# Code: hepflows.sampling (sample), hepflows.shards (merge_samples, merge_validation_sample).

SAMPLE_JOB = None if SAMPLE_SHARDS == 1 else "shard_{shard}"


rule sample:
    input:
        model=model_path("model"),
        preprocess=run_path("preprocess"),
    output:
        GENERATED if SAMPLE_SHARDS == 1 else SAMPLE_SHARD,
    wildcard_constraints:
        shard=r"\d+",
    params:
        script=script("sample"),
        settings=sample_settings,
        shard=lambda wildcards: "" if SAMPLE_SHARDS == 1 else f" --shard {wildcards.shard}",
    threads: 4  # capped at --cores by Snakemake
    log:
        model_log("sample", SAMPLE_JOB),
    benchmark:
        model_benchmark("sample", SAMPLE_JOB)
    conda:
        "../../envs/train.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}{params.shard}"
        " --model {input.model} --preprocess {input.preprocess} --out {output} > {log} 2>&1"


if SAMPLE_SHARDS > 1:

    rule merge_samples:
        input:
            expand(SAMPLE_SHARD, shard=range(SAMPLE_SHARDS), allow_missing=True),
        output:
            GENERATED,
        params:
            script=script("merge"),
            compression=SAMPLING["compression"],
        log:
            model_log("merge_samples"),
        benchmark:
            model_benchmark("merge_samples")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --compression {params.compression}"
            " --inputs {input} --out {output} > {log} 2>&1"

    rule merge_validation_sample:
        input:
            validation_shards(),
        output:
            model_path("validation_sample"),
        params:
            script=script("merge"),
            per_shard=validation_share(),
        log:
            model_log("merge_validation_sample"),
        benchmark:
            model_benchmark("merge_validation_sample")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --max-events-per-input {params.per_shard}"
            " --inputs {input} --out {output} > {log} 2>&1"
