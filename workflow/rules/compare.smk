# A grid of models (config `models:`): their verdicts side by side, one row a model.
# Code: hepflows.report.compare.


if GRID:

    rule compare:
        input:
            metrics=per_model(model_path("metrics")),
            closure=per_model(model_path("closure")),
            training=per_model(model_path("log")),
            # its n_equiv and G columns, when the amplification is measured
            amplification=amplification_outputs(),
        output:
            table=run_path("comparison_table"),
            html=report(
                run_path("comparison_html"),
                caption="../report/comparison.rst",
                category="1. Verdict",
            ),
            figure=report(
                run_path("comparison_png"),
                caption="../report/comparison_figure.rst",
                category="1. Verdict",
            ),
            figure_pdf=run_path("comparison_pdf"),
        params:
            script=script("compare"),
            settings=settings("models", *MODEL_SECTIONS),
            models=per_model(MODEL_DIR),
            out_dir=lambda wildcards, output: os.path.dirname(output.table),
        log:
            run_log("compare"),
        benchmark:
            run_benchmark("compare")
        conda:
            "../../envs/validate.yaml"
        shell:
            "python {params.script} --settings {params.settings:q}"
            " --models {params.models} --out-dir {params.out_dir} > {log} 2>&1"
