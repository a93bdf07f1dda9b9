# How many MC events each model's generated sample is worth (n_equiv, G = n_equiv / n_train),
# measured against a truth sample the flow never saw: for generator data data/truth.root
# (generate_truth: validation.amplification.truth_events events from a range far beyond the
# splits, same seed and data settings), for ingested data the test split.
# Code: hepflows.validation.amplification (measurement), .amplification_plot (figure).
# Its helpers (TRUTH, the settings, the sample it reads) are in common.smk.

if AMPLIFICATION["enabled"] and config["data"]["source"] == "generator":

    rule generate_truth:
        output:
            run_path("truth"),
        params:
            script=script("generate"),
            settings=truth_settings(),
        log:
            run_log("generate_truth"),
        benchmark:
            run_benchmark("generate_truth")
        conda:
            "../../envs/data.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --truth {output} > {log} 2>&1"


if AMPLIFICATION["enabled"]:

    rule amplification:
        input:
            truth=TRUTH,
            generated=amplification_sample(),
            train=run_path("train"),
        output:
            json=model_path("amplification"),
            table=model_path("amplification_table"),
            summary=report(
                model_path("amplification_summary"),
                caption="../report/amplification_summary.rst",
                category="1. Verdict",
                **BY_MODEL,
            ),
            png=report(
                model_path("amplification_png"),
                caption="../report/amplification.rst",
                category="1. Verdict",
                **BY_MODEL,
            ),
            pdf=model_path("amplification_pdf"),
        params:
            script=script("amplification"),
            settings=amplification_settings(),
            out_dir=lambda wildcards, output: os.path.dirname(output.json),
        log:
            model_log("amplification"),
        benchmark:
            model_benchmark("amplification")
        conda:
            "../../envs/validate.yaml"
        shell:
            "python {params.script} --settings {params.settings:q} --truth {input.truth}"
            " --generated {input.generated} --train {input.train}"
            " --out-dir {params.out_dir} > {log} 2>&1"
