# hepflows: learn collider events with a normalizing flow, generate more, prove they are faithful.
# This file only wires: configuration, its validation, and the rules of workflow/rules/.
#
#   snakemake --cores all                          # the default run (config/config.yaml)
#   snakemake --cores all --configfile config/seed-paper.yaml
#   snakemake --report results/<run>/report.html   # the HTML report

import sys

from hepflows import config as hepflows_config
from hepflows import layout, precheck
from hepflows.errors import InputError
from hepflows.settings import Settings


# The user's --configfile alone when one is given (keys it leaves out take the schema's defaults,
# exactly as `hepflows run --config` does); the embedded default only when none is.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


CONFIG_SOURCE = ", ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml"
STARTED = precheck.started()

try:
    # Schema (src/hepflows/schemas/config.schema.yaml, package data) plus the checks a schema
    # cannot express, then what only this machine can check (inputs, selection syntax).
    config = hepflows_config.validate(config, source=CONFIG_SOURCE)
    SETTINGS = Settings.from_config(config)
    precheck.check_run(SETTINGS, source=CONFIG_SOURCE)
except InputError as err:
    # hepflows' message alone, as the steps print it: no traceback into this file
    print(f"hepflows: invalid configuration: {err}", file=sys.stderr)
    sys.exit(2)

RESULTS = str(layout.run_dir(config["run"]))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/merge.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/validate.smk"
include: "workflow/rules/amplification.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/toys.smk"


# Everything a run makes; the summary (its report's first page) waits for all of it.
RUN_OUTPUTS = [
    *per_model(model_path("metrics")),
    *per_model(model_path("curve_png")),
    *sample_outputs(),
    *amplification_outputs(),
    *refine_outputs(),
    *([run_path("comparison_html")] if GRID else []),
    *([run_path("toys_png")] if config["toys"]["enabled"] else []),
]


include: "workflow/rules/summary.smk"


rule all:
    input:
        RUN_OUTPUTS,
        run_path("summary"),


onerror:
    # The terminal's last lines: the failed steps' own messages, not only their shell commands.
    for message in precheck.failed_step_messages(RESULTS, STARTED):
        print(f"hepflows: a step failed; its log {message}", file=sys.stderr)
