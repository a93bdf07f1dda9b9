# Compare generated events with held-out MC against the MC-vs-MC null distribution.
# A sharded sample is validated on an equal share of the chosen shards (merge_validation_sample),
# so validation need not wait for every shard or for the merged file.
# Code: hepflows.report.runner (metrics, verdict, plots), hepflows.validation.closure.


rule validate:
    input:
        reference=run_path("test"),
        generated=validation_sample(),
        train=run_path("train"),
        **REFINE_VALIDATE_INPUTS,
    output:
        metrics=model_path("metrics"),
        table=report(
            model_path("metrics_table"),
            caption="../report/metrics.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        closure=report(
            model_path("closure"),
            caption="../report/closure.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        verdict=report(
            model_path("verdict"),
            caption="../report/verdict.rst",
            category="1. Verdict",
            **BY_MODEL,
        ),
        plots=report(
            directory(model_path("plots")),
            patterns=["{name}.png"],
            caption="../report/plots.rst",
            category="3. Distributions",
            **BY_MODEL,
            labels={"figure": "{name}"},
        ),
        **REFINE_VALIDATE_OUTPUTS,
    params:
        script=script("validate"),
        settings=validate_settings(),
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        refine=refine_validate_arguments,
    threads: 4  # capped at --cores by Snakemake
    log:
        model_log("validate"),
    benchmark:
        model_benchmark("validate")
    conda:
        "../../envs/validate.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --reference {input.reference} --generated {input.generated} --train {input.train}"
        " --out-dir {params.out_dir}{params.refine} > {log} 2>&1"
