# A grid of models (config `models:`): their verdicts side by side, one row a model.


if GRID:

    rule compare:
        input:
            metrics=per_model(f"{MODEL_DIR}/validation/metrics.json"),
            closure=per_model(f"{MODEL_DIR}/validation/closure.csv"),
            training=per_model(f"{MODEL_DIR}/model/training_log.csv"),
        output:
            table=f"{RESULTS}/comparison/models.csv",
            html=report(
                f"{RESULTS}/comparison/models.html",
                caption="../report/comparison.rst",
                category="1. Verdict",
            ),
        params:
            script=script("compare"),
            settings=settings("models", *MODEL_SECTIONS),
            models=per_model(MODEL_DIR),
            out_dir=lambda wildcards, output: os.path.dirname(output.table),
        log:
            f"{RESULTS}/logs/compare.log",
        benchmark:
            f"{RESULTS}/benchmarks/compare.tsv"
        conda:
            "../../envs/validate.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --models {params.models} --out-dir {params.out_dir} > {log} 2>&1"
