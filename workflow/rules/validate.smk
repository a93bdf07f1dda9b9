# Compare generated events with held-out MC against the MC-vs-MC null distribution.
# A sharded sample is validated on an equal share of the chosen shards (merge_validation_sample),
# so validation need not wait for every shard or for the merged file.


rule validate:
    input:
        reference=f"{RESULTS}/data/test.root",
        generated=validation_sample(),
        train=f"{RESULTS}/data/train.root",
    output:
        metrics=f"{RESULTS}/validation/metrics.json",
        table=report(
            f"{RESULTS}/validation/metrics.csv",
            caption="../report/metrics.rst",
            category="1. Verdict",
        ),
        closure=report(
            f"{RESULTS}/validation/closure.csv",
            caption="../report/closure.rst",
            category="1. Verdict",
        ),
        verdict=report(
            f"{RESULTS}/validation/verdict.html",
            caption="../report/verdict.rst",
            category="1. Verdict",
        ),
        plots=report(
            directory(f"{RESULTS}/validation/plots"),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="3. Distributions",
            labels={"figure": "{name}"},
        ),
    params:
        script=script("validate"),
        settings=settings("seed", "features", "data", "validation"),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: 4  # capped at --cores by Snakemake
    log:
        f"{RESULTS}/logs/validate.log",
    benchmark:
        f"{RESULTS}/benchmarks/validate.tsv"
    conda:
        "../../envs/validate.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --reference {input.reference} --generated {input.generated} --train {input.train}"
        " --out-dir {params.out_dir} > {log} 2>&1"
