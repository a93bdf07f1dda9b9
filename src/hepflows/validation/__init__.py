"""The statistics of validation: generated events against MC, judged against MC vs MC.

Nothing here draws or writes a page; :mod:`hepflows.report` does, importing these modules
(never the other way).

* :mod:`~hepflows.validation.metrics`: two-sample distances (KS, chi2, Wasserstein, separation
  power, FPD, KPD, correlation differences).
* :mod:`~hepflows.validation.null`: band, p-value and colour from MC-vs-MC repeats.
* :mod:`~hepflows.validation.classifier`: the classifier two-sample test.
* :mod:`~hepflows.validation.samples`: the compared samples and the draws of the null pairs.
* :mod:`~hepflows.validation.derived`: derived observables for the classifier judges.
* :mod:`~hepflows.validation.judge`: the metrics of one pair, judged against the null.
* :mod:`~hepflows.validation.evaluation`: :func:`~hepflows.validation.evaluation.evaluate`,
  every metric of a generated sample and its null, and the verdict.
* :mod:`~hepflows.validation.closure`: the physics closure (classifier AUC, template fit).
* :mod:`~hepflows.validation.amplification`: how many MC events a generated sample is worth.
"""
