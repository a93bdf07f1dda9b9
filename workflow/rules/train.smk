# Train the flow on the preprocessed training events, with early stopping on validation.
# Code: hepflows.training (the loop), hepflows.flows (the model).


rule train:
    input:
        train=run_path("train"),
        val=run_path("val"),
        preprocess=run_path("preprocess"),
    output:
        model=model_path("model"),
        log=model_path("log"),
        curve=report(
            model_path("curve_png"),
            caption="../report/training_curve.rst",
            category="2. Training",
            **BY_MODEL,
        ),
        curve_pdf=model_path("curve_pdf"),
    params:
        script=script("train"),
        settings=model_settings(*MODEL_SECTIONS),
        curve=lambda wildcards, output: output.curve[: -len(".png")],
    threads: 4  # capped at --cores by Snakemake
    log:
        model_log("train"),
    benchmark:
        model_benchmark("train")
    conda:
        "../../envs/train.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --train {input.train} --val {input.val} --preprocess {input.preprocess}"
        " --model {output.model} --log {output.log} --plot {params.curve} > {log} 2>&1"
