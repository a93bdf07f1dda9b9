"""Former name of :mod:`hepflows.shards`, kept so that existing imports keep working."""

from hepflows.shards import *  # noqa: F403
from hepflows.shards import __all__  # noqa: F401
