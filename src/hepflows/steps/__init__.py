"""The pipeline's steps, one module each: ``hepflows.steps.<step>.run`` does a step's work.

Each ``run`` takes the validated settings (:func:`hepflows.config.load`) and the step's paths;
the command line (:mod:`hepflows.cli`), ``scripts/<step>.py``, ``hepflows run`` and the
Snakemake rules all reach a step through it.  Nothing is imported here: each step's module
imports only what its own conda environment holds.
"""
