# The seed study's Figure 7: three 2-D toy densities (Swiss roll, eight Gaussians, checkerboard),
# their data, the learned density and samples of an affine (RealNVP) and a spline (RQ-NSF) flow.
# Small by default (a few seconds per flow). Code: hepflows.toys.


rule toys:
    output:
        png=report(
            run_path("toys_png"),
            caption="../report/toys.rst",
            category="5. Toy densities",
        ),
        pdf=run_path("toys_pdf"),
    params:
        script=script("toys"),
        out=lambda wildcards, output: output.png.removesuffix(".png"),
        seed=config["seed"],
    log:
        run_log("toys"),
    benchmark:
        run_benchmark("toys")
    conda:
        "../../envs/train.yaml"
    shell:
        "python {params.script} --out {params.out} --seed {params.seed} > {log} 2>&1"
