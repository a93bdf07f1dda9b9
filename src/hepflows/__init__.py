"""hepflows: normalizing flows that learn collider events and generate more of them.

*The seed study*, named throughout the code, is the 2022 Ljubljana seminar study on normalizing
flows for the simulation of high-energy-physics events: RealNVP and Glow flows on the 18
continuous features of the HIGGS dataset; ``config/seed-paper.yaml`` is its exact setup, and
the documentation's "Getting started" page describes it.
"""

__version__ = "0.2.0"
