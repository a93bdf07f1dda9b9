# The report's first page: what ran (config hash, model, training events, epochs, device, wall
# time per step, git commit) and the verdict in one sentence with its coloured table.
# It waits for every other output of the run (RUN_OUTPUTS, in the Snakefile): a rule's benchmark
# record is written when its job ends, so once those outputs exist every step's record does;
# it reads the records that exist (sharded steps have one per job).
# Code: hepflows.report.run_summary.


rule summary:
    input:
        outputs=RUN_OUTPUTS,
        metrics=per_model(model_path("metrics")),
        training=per_model(model_path("log")),
    output:
        html=report(
            run_path("summary"),
            caption="../report/summary.rst",
            category="0. Summary",
        ),
    params:
        script=script("summary"),
        # the whole config: the page shows its hash, so any change rewrites it
        settings=settings(*sorted(config)),
        run_dir=lambda wildcards, output: os.path.dirname(output.html),
        # a grid's model folders (one model: the run's folder, the script's default)
        models=["--models", *per_model(MODEL_DIR)] if GRID else [],
    log:
        run_log("summary"),
    benchmark:
        run_benchmark("summary")
    conda:
        "../../envs/validate.yaml"
    shell:
        "python {params.script} --settings {params.settings:q} --run-dir {params.run_dir}"
        " {params.models} --out {output.html} > {log} 2>&1"
