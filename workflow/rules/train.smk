# Train the flow on the preprocessed training events, with early stopping on validation.


rule train:
    input:
        train=f"{RESULTS}/data/train.root",
        val=f"{RESULTS}/data/val.root",
        preprocess=f"{RESULTS}/preprocess.json",
    output:
        model=f"{MODEL_DIR}/model/model.pt",
        log=f"{MODEL_DIR}/model/training_log.csv",
        curve=report(
            f"{MODEL_DIR}/model/training_curve.png",
            caption="../report/training_curve.rst",
            category="2. Training",
            **BY_MODEL,
        ),
        curve_pdf=f"{MODEL_DIR}/model/training_curve.pdf",
    params:
        script=script("train"),
        settings=model_settings(*MODEL_SECTIONS),
        curve=lambda wildcards, output: output.curve[: -len(".png")],
    threads: 4  # capped at --cores by Snakemake
    log:
        f"{MODEL_DIR}/logs/train.log",
    benchmark:
        f"{MODEL_DIR}/benchmarks/train.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --train {input.train} --val {input.val} --preprocess {input.preprocess}"
        " --model {output.model} --log {output.log} --plot {params.curve} > {log} 2>&1"
