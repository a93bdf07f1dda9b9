# Classifier reweighting of each model's sample (config refine:, off by default): a classifier
# of MC vs a separate draw of the model weights every generated event, w = p / (1 - p), into
# samples/refined.root (the events plus a weight branch); validate and amplification then also
# judge the weighted sample (validation/reweighted/, validation/refine.html side by side).
# The classifier's MC is kept out of every validation: for generator data data/refine.root
# (generate_refine: refine.mc_events events from event 2e9 on, beyond the splits and the truth),
# for ingested data the training split.  Its generated events are chunks from 2^31 on.
# Code: hepflows.refine (refine), hepflows.sampling (sample_refine).
# Its helpers (REFINE, the settings, what validate is given) are in common.smk.

check_refine()


if REFINE and config["data"]["source"] == "generator":

    rule generate_refine:
        output:
            run_path("refine_mc"),
        params:
            script=script("generate"),
            settings=refine_mc_settings(),
        log:
            run_log("generate_refine"),
        benchmark:
            run_benchmark("generate_refine")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --refine {output} > {log} 2>&1"


if REFINE:

    rule sample_refine:
        input:
            model=model_path("model"),
            preprocess=run_path("preprocess"),
        output:
            model_path("refine_draw"),
        params:
            script=script("sample"),
            settings=refine_draw_settings,
        threads: 4  # capped at --cores by Snakemake
        log:
            model_log("sample_refine"),
        benchmark:
            model_benchmark("sample_refine")
        conda:
            "../../envs/train.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --refine-draw"
            " --model {input.model} --preprocess {input.preprocess} --out {output} > {log} 2>&1"

    rule refine:
        input:
            mc=REFINE_MC,
            draw=model_path("refine_draw"),
            generated=GENERATED,
        output:
            refined=model_path("refined"),
            report=model_path("refine_report"),
        params:
            script=script("refine"),
            settings=model_settings(*MODEL_SECTIONS, "sampling", "refine"),
        threads: 4  # capped at --cores by Snakemake
        log:
            model_log("refine"),
        benchmark:
            model_benchmark("refine")
        conda:
            "../../envs/validate.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --mc {input.mc}"
            " --draw {input.draw} --generated {input.generated}"
            " --out {output.refined} --report {output.report} > {log} 2>&1"


if REFINE and AMPLIFICATION["enabled"]:

    rule amplification_reweighted:
        input:
            truth=TRUTH,
            generated=model_path("refined"),
            train=run_path("train"),
        output:
            json=model_path("reweighted_amplification"),
        params:
            script=script("amplification"),
            settings=amplification_settings(),
            out_dir=lambda wildcards, output: os.path.dirname(output.json),
        log:
            model_log("amplification_reweighted"),
        benchmark:
            model_benchmark("amplification_reweighted")
        conda:
            "../../envs/validate.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --truth {input.truth}"
            " --generated {input.generated} --train {input.train}"
            " --out-dir {params.out_dir} > {log} 2>&1"
