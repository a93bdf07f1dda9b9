# MC events: from the embedded generator, or ingested from a HIGGS CSV / ROOT ntuple.
# The generator may run as data.shards jobs per split, joined by merge_data (the same events).
# Code: hepflows.events.generator (generate), hepflows.events.inputs and .convert (ingest),
# hepflows.shards (merge_data), hepflows.preprocess (preprocess).

if config["data"]["source"] == "generator":

    rule generate:
        output:
            **(DATA_FILES if DATA_SHARDS == 1 else {"shard": DATA_SHARD}),
        wildcard_constraints:
            split="train|val|test",
            shard=r"\d+",
        params:
            script=script("generate"),
            settings=settings("seed", "data"),
            outputs=generate_arguments,
        log:
            run_log("generate", None if DATA_SHARDS == 1 else "{split}_{shard}"),
        benchmark:
            run_benchmark("generate", None if DATA_SHARDS == 1 else "{split}_{shard}")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} {params.outputs} > {log} 2>&1"

else:

    from hepflows import feasibility as hepflows_feasibility
    from hepflows.events import inputs as hepflows_inputs

    rule ingest:
        input:
            # every file of data.inputs (globs expanded) or data.path
            hepflows_inputs.input_paths(SETTINGS.data),
        output:
            **DATA_FILES,
        params:
            script=script("ingest"),
            settings=settings("seed", *FEATURE_SECTIONS, "data"),
            # what the fail-fast checks read of later steps (validation.classifier, ...): a
            # function of the output, so that Snakemake does not count it among the params
            # that rerun ingest (and retrain) when they change; ingest's files do not depend on it
            checks=lambda wildcards, output: json.dumps(
                hepflows_feasibility.ingest_reads(config), sort_keys=True
            ),
        log:
            run_log("ingest"),
        benchmark:
            run_benchmark("ingest")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --checks {params.checks:q}"
            " --train {output.train} --val {output.val} --test {output.test} > {log} 2>&1"


if config["data"]["source"] == "generator" and DATA_SHARDS > 1:

    rule merge_data:
        input:
            data_shards,
        output:
            run_path("data_split"),
        wildcard_constraints:
            split="train|val|test",
        params:
            script=script("merge"),
        log:
            run_log("merge_data", "{split}"),
        benchmark:
            run_benchmark("merge_data", "{split}")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --quiet --inputs {input} --out {output} > {log} 2>&1"


rule preprocess:
    input:
        train=run_path("train"),
    output:
        run_path("preprocess"),
    params:
        script=script("preprocess"),
        settings=settings(*PREPROCESS_SECTIONS),
    log:
        run_log("preprocess"),
    benchmark:
        run_benchmark("preprocess")
    conda:
        "../../envs/data.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --train {input.train} --out {output} > {log} 2>&1"
