# Generate N events with the trained flow, streamed to ROOT in chunks.


rule sample:
    input:
        model=f"{RESULTS}/model/model.pt",
        preprocess=f"{RESULTS}/preprocess.json",
    output:
        f"{RESULTS}/samples/generated.root",
    params:
        script=script("sample"),
        settings=settings(*MODEL_SECTIONS, "sampling"),
    threads: workflow.cores
    log:
        f"{RESULTS}/logs/sample.log",
    benchmark:
        f"{RESULTS}/benchmarks/sample.tsv"
    conda:
        "../../envs/train.yaml"
    shell:
        "python {params.script} --settings {params.settings:q}"
        " --model {input.model} --preprocess {input.preprocess} --out {output} > {log} 2>&1"
