"""hepflows: normalizing flows that learn collider events and generate more of them."""

__version__ = "0.1.0"
