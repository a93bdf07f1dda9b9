# Compare generated events with held-out MC against the MC-vs-MC null distribution.
# A sharded sample is validated on an equal share of the chosen shards (merge_validation_sample),
# so validation need not wait for every shard or for the merged file.


rule validate:
    input:
        reference=f"{RESULTS}/data/test.root",
        generated=validation_sample(),
        train=f"{RESULTS}/data/train.root",
    output:
        metrics=f"{MODEL_DIR}/validation/metrics.json",
        table=report(
            f"{MODEL_DIR}/validation/metrics.csv",
            caption="../report/metrics.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        closure=report(
            f"{MODEL_DIR}/validation/closure.csv",
            caption="../report/closure.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        verdict=report(
            f"{MODEL_DIR}/validation/verdict.html",
            caption="../report/verdict.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        plots=report(
            directory(f"{MODEL_DIR}/validation/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="3. Distributions",
            **BY_MODEL,
            labels={"figure": "{name}"},
        ),
    params:
        script=script("validate"),
        settings=settings("seed", "features", "data", "validation"),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: 4  # capped at --cores by Snakemake
    log:
        f"{MODEL_DIR}/logs/validate.log",
    benchmark:
        f"{MODEL_DIR}/benchmarks/validate.tsv"
    conda:
        "../../envs/validate.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --reference {input.reference} --generated {input.generated} --train {input.train}"
        " --out-dir {params.out_dir} > {log} 2>&1"
