# MC events: from the embedded generator, or ingested from a HIGGS CSV / ROOT ntuple.
# The generator may run as data.shards jobs per split, joined by merge_data (the same events).


if config["data"]["source"] == "generator" and DATA_SHARDS == 1:

    rule generate:
        output:
            train=f"{RESULTS}/data/train.root",
            val=f"{RESULTS}/data/val.root",
            test=f"{RESULTS}/data/test.root",
        params:
            script=script("generate"),
            settings=settings("seed", "data"),
        log:
            f"{RESULTS}/logs/generate.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --train {output.train} --val {output.val} --test {output.test} > {log} 2>&1"

elif config["data"]["source"] == "generator":

    rule generate:
        output:
            DATA_SHARD,
        wildcard_constraints:
            split="train|val|test",
            shard=r"\d+",
        params:
            script=script("generate"),
            settings=settings("seed", "data"),
        log:
            f"{RESULTS}/logs/generate/{{split}}_{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{{split}}_{{shard}}.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --split {wildcards.split} --shard {wildcards.shard} --out {output} > {log} 2>&1"

    rule merge_data:
        input:
            data_shards,
        output:
            f"{RESULTS}/data/{{split}}.root",
        wildcard_constraints:
            split="train|val|test",
        params:
            script=script("merge"),
        log:
            f"{RESULTS}/logs/merge_data/{{split}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/merge_data/{{split}}.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --inputs {input} --out {output} > {log} 2>&1"

else:

    rule ingest:
        input:
            config["data"]["path"],
        output:
            train=f"{RESULTS}/data/train.root",
            val=f"{RESULTS}/data/val.root",
            test=f"{RESULTS}/data/test.root",
        params:
            script=script("ingest"),
            settings=settings("seed", "data"),
        log:
            f"{RESULTS}/logs/ingest.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest.tsv"
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --train {output.train} --val {output.val} --test {output.test} > {log} 2>&1"


rule preprocess:
    input:
        train=f"{RESULTS}/data/train.root",
    output:
        f"{RESULTS}/preprocess.json",
    params:
        script=script("preprocess"),
        settings=settings(*PREPROCESS_SECTIONS),
    log:
        f"{RESULTS}/logs/preprocess.log",
    benchmark:
        f"{RESULTS}/benchmarks/preprocess.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --train {input.train} --out {output} > {log} 2>&1"
