# Generate N events with the trained flow, streamed to ROOT in chunks: as one job, or as
# sampling.shards jobs of whole chunks joined by merge_samples (the same events either way).
if SAMPLE_SHARDS == 1:

    rule sample:
        input:
            model=f"{MODEL_DIR}/model/model.pt",
            preprocess=f"{RESULTS}/preprocess.json",
        output:
            GENERATED,
        params:
            script=script("sample"),
            settings=sample_settings,
        threads: 4  # capped at --cores by Snakemake
        log:
            f"{MODEL_DIR}/logs/sample.log",
        benchmark:
            f"{MODEL_DIR}/benchmarks/sample.tsv"
        conda:
            "../../envs/train.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --model {input.model} --preprocess {input.preprocess} --out {output} > {log} 2>&1"

else:

    rule sample:
        input:
            model=f"{MODEL_DIR}/model/model.pt",
            preprocess=f"{RESULTS}/preprocess.json",
        output:
            SAMPLE_SHARD,
        wildcard_constraints:
            shard=r"\d+",
        params:
            script=script("sample"),
            settings=sample_settings,
        threads: 4  # capped at --cores by Snakemake
        log:
            f"{MODEL_DIR}/logs/sample/shard_{{shard}}.log",
        benchmark:
            f"{MODEL_DIR}/benchmarks/sample/shard_{{shard}}.tsv"
        conda:
            "../../envs/train.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --shard {wildcards.shard}"
            " --model {input.model} --preprocess {input.preprocess} --out {output} > {log} 2>&1"

    rule merge_samples:
        input:
            expand(SAMPLE_SHARD, shard=range(SAMPLE_SHARDS), allow_missing=True),
        output:
            GENERATED,
        params:
            script=script("merge"),
            compression=SAMPLING["compression"],
        log:
            f"{MODEL_DIR}/logs/merge_samples.log",
        benchmark:
            f"{MODEL_DIR}/benchmarks/merge_samples.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --compression {params.compression}"
            " --inputs {input} --out {output} > {log} 2>&1"

    rule merge_validation_sample:
        input:
            validation_shards(),
        output:
            f"{MODEL_DIR}/samples/validation.root",
        params:
            script=script("merge"),
            per_shard=validation_share(),
        log:
            f"{MODEL_DIR}/logs/merge_validation_sample.log",
        benchmark:
            f"{MODEL_DIR}/benchmarks/merge_validation_sample.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --max-events-per-input {params.per_shard}"
            " --inputs {input} --out {output} > {log} 2>&1"
