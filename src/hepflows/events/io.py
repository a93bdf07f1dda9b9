"""Event files in and out: the public names of the modules that do each part.

* :mod:`hepflows.events.writer`: :class:`EventWriter` and :func:`write_events` (ROOT out);
* :mod:`hepflows.events.reader`: :func:`read_events`, :func:`iterate_events`,
  :func:`count_events`, :func:`branch_names`, :func:`read_metadata` (ROOT in);
* :mod:`hepflows.events.higgs_csv`: :func:`iter_higgs_csv` (the HIGGS CSV in);
* :mod:`hepflows.events.convert`: :func:`convert_higgs_csv`, :func:`convert_root` (a CSV or an
  ntuple into train/val/test event files).

Importing from here keeps working; new code may import from the module that does the work.
"""

from hepflows.events.convert import HIGGS_TEST_ROWS, convert_higgs_csv, convert_root
from hepflows.events.higgs_csv import CSV_BLOCK_SIZE, CSV_COLUMNS, iter_higgs_csv
from hepflows.events.reader import (
    branch_names,
    count_events,
    iterate_events,
    read_events,
    read_metadata,
)
from hepflows.events.writer import COMPRESSIONS, METADATA_KEY, EventWriter, write_events

__all__ = [
    "COMPRESSIONS",
    "CSV_BLOCK_SIZE",
    "CSV_COLUMNS",
    "HIGGS_TEST_ROWS",
    "METADATA_KEY",
    "EventWriter",
    "branch_names",
    "convert_higgs_csv",
    "convert_root",
    "count_events",
    "iter_higgs_csv",
    "iterate_events",
    "read_events",
    "read_metadata",
    "write_events",
]
