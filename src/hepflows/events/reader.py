"""Reading ROOT event files (uproot): whole, in chunks, their size, branches and metadata.

Inputs may be any ROOT file with a TTree of one number per event and branch; every way a file
can be unreadable (missing, not ROOT, truncated, no such tree or branch, jagged or non-numeric
branches, NaN or Inf, labels other than 0/1) is an :class:`hepflows.errors.InputError` naming
the file and the place inside it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from hepflows.errors import InputError
from hepflows.events.checks import check_finite, check_labels
from hepflows.events.checks import path_text as _where
from hepflows.events.schema import HIGGS_FEATURES, LABEL, TREE_NAME, WEIGHT
from hepflows.events.writer import METADATA_KEY

__all__ = [
    "branch_names",
    "check_columns",
    "count_events",
    "get_ntuple",
    "iterate_events",
    "ntuple_kind",
    "read_events",
    "read_metadata",
]


@contextlib.contextmanager
def open_root(path: str | Path) -> Iterator[Any]:
    """Open a ROOT file, turning every way it can be unreadable into an InputError."""
    where = _where(path)
    p = Path(path)
    if not p.exists():
        raise InputError(f"{where}: no such file")
    if not p.is_file():
        raise InputError(f"{where}: not a regular file")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"root":
        raise InputError(
            f"{where}: not a ROOT file (it starts with {magic!r}, a ROOT file with b'root')"
        )
    try:
        f = uproot.open(p)
    except Exception as exc:
        raise InputError(
            f"{where}: cannot open as a ROOT file (truncated or corrupt?): {exc}"
        ) from exc
    try:
        end = int(getattr(f.file, "fEND", 0) or 0)
        if end > size:
            raise InputError(
                f"{where}: truncated ROOT file: {size} bytes on disk, but its header says {end}"
            )
        yield f
    finally:
        f.close()


def _named(f: Any, name: str, where: str) -> Any:
    """The object ``name`` of an open file, refused when absent or unreadable."""
    keys = sorted({k.split(";")[0] for k in f.keys(recursive=False)})
    if name not in keys:
        raise InputError(f"{where}: no tree {name!r}; the file has keys {keys}")
    try:
        return f[name]
    except Exception as exc:
        raise InputError(f"{where}: cannot read {name!r} (truncated or corrupt?): {exc}") from exc


def get_tree(f: Any, tree: str, where: str) -> Any:
    """The TTree ``tree`` of an open file (the project's event files)."""
    obj = _named(f, tree, where)
    if not isinstance(obj, uproot.behaviors.TTree.TTree):
        raise InputError(f"{where}: {tree!r} is a {f.classname_of(tree)}, expected a TTree")
    return obj


def get_ntuple(f: Any, name: str, where: str) -> Any:
    """The TTree or RNTuple ``name`` of an open file (inputs may be either)."""
    obj = _named(f, name, where)
    if not isinstance(obj, (uproot.behaviors.TTree.TTree, uproot.behaviors.RNTuple.RNTuple)):
        raise InputError(
            f"{where}: {name!r} is a {f.classname_of(name)}, expected a TTree or an RNTuple"
        )
    return obj


def ntuple_kind(t: Any) -> tuple[str, str]:
    """("TTree", "branch") or ("RNTuple", "field"): how messages name the ntuple and a column."""
    if isinstance(t, uproot.behaviors.RNTuple.RNTuple):
        return "RNTuple", "field"
    return "TTree", "branch"


def _rntuple_column_problem(t: Any, field: Any) -> tuple[str, str] | None:
    """None if the top-level field ``field`` of the RNTuple ``t`` is one number per entry, else
    ("jagged"|"non_numeric", text)."""
    try:
        # filtered by exact name from the RNTuple: a '/' in the name is not a path
        record = t.to_akform(filter_name=lambda name: name == field.name)[0]
        form = record.contents[record.fields.index(field.name)]
    except Exception:
        return "non_numeric", f"{field.name} (uninterpretable)"
    if isinstance(form, ak.forms.NumpyForm) and not form.inner_shape:
        if np.dtype(form.primitive if form.primitive != "bool" else "?").kind in "biuf":
            return None
        return "non_numeric", f"{field.name} ({field.typename})"
    if form.parameters.get("__array__") in ("string", "char") or not isinstance(
        form, (ak.forms.ListOffsetForm, ak.forms.ListForm, ak.forms.RegularForm, ak.forms.NumpyForm)
    ):
        return "non_numeric", f"{field.name} ({field.typename})"
    if isinstance(form, ak.forms.RegularForm):
        return "jagged", f"{field.name} (fixed-size array {field.typename})"
    return "jagged", field.name


def check_columns(
    t: Any,
    columns: Sequence[str],
    where: str,
    uses: Mapping[str, str] | None = None,
    *,
    jagged: Collection[str] = (),
) -> None:
    """Raise InputError unless every branch (TTree) or field (RNTuple) exists and holds one
    number per entry, or, for those in ``jagged`` (read as ``name[i]`` or ``len(name)``),
    exists.  ``uses`` names what a column is for (``"feature 'met'"``), in messages."""
    kind, word = ntuple_kind(t)
    if kind == "TTree":
        present = list(t.keys(recursive=False))
    else:
        present = list(t.keys())
    missing = [c for c in columns if c not in present]
    uses = dict(uses or {})

    def _for(cols: Sequence[str]) -> str:
        named = [uses[c] for c in cols if c in uses]
        return f" (for {', '.join(named)})" if named else ""

    if missing:
        raise InputError(
            f"{where}: {kind} {t.name!r} lacks {'branch(es)' if word == 'branch' else 'field(s)'} "
            f"{missing}{_for(missing)}; it has {present}"
        )
    scalar = [c for c in columns if c not in jagged]
    if kind == "TTree":
        check_branches(t, scalar, where)
        return
    several: list[str] = []
    non_numeric: list[str] = []
    # by name among the top-level fields: t[c] reads a '/' in a field's name as a path
    fields = {f.name: f for f in t.fields}
    for c in scalar:
        problem = _rntuple_column_problem(t, fields[c] if c in fields else t[c])
        if problem is not None:
            (several if problem[0] == "jagged" else non_numeric).append(problem[1])
    if several:
        raise InputError(
            f"{where}: RNTuple {t.name!r}: field(s) {several} hold several values per event; "
            "expected one number per event (name[i] in derived reads element i)"
        )
    if non_numeric:
        raise InputError(
            f"{where}: RNTuple {t.name!r}: field(s) {non_numeric} are not numeric; "
            "expected integer or floating-point numbers"
        )


def check_branches(t: Any, branches: Sequence[str], where: str) -> None:
    """Raise InputError unless every branch exists and is a numeric scalar per entry."""
    present = list(t.keys(recursive=False))
    missing = [b for b in branches if b not in present]
    if missing:
        raise InputError(f"{where}: tree {t.name!r} lacks branch(es) {missing}; it has {present}")
    jagged, non_numeric = [], []
    for b in branches:
        try:
            interp = t[b].interpretation
        except Exception:
            non_numeric.append(f"{b} (uninterpretable)")
            continue
        if isinstance(interp, uproot.interpretation.jagged.AsJagged):
            jagged.append(b)
        elif not isinstance(interp, uproot.interpretation.numerical.AsDtype):
            non_numeric.append(f"{b} ({type(interp).__name__})")
        else:
            dt = interp.to_dtype
            if dt.shape != ():
                jagged.append(f"{b} (fixed-size array {dt.shape})")
            elif dt.kind not in "biuf":
                non_numeric.append(f"{b} ({dt})")
    if jagged:
        raise InputError(
            f"{where}: tree {t.name!r}: branch(es) {jagged} hold several values per event; "
            "expected one number per event (name[i] in derived reads element i)"
        )
    if non_numeric:
        raise InputError(
            f"{where}: tree {t.name!r}: branch(es) {non_numeric} are not numeric; "
            "expected integer or floating-point numbers"
        )


def _resolve_features(features: Sequence[str] | None, t: Any, where: str) -> tuple[str, ...]:
    if features is None:
        present = set(t.keys(recursive=False))
        found = tuple(f for f in HIGGS_FEATURES if f in present) + tuple(
            b for b in t.keys(recursive=False) if b not in (*HIGGS_FEATURES, LABEL, WEIGHT)
        )
        if not found:
            raise InputError(
                f"{where}: tree {t.name!r} has no feature branches; it has {sorted(present)}"
            )
        return found
    if isinstance(features, str):
        features = [features]
    return tuple(features)


def _cast_events(
    raw: Mapping[str, np.ndarray],
    features: Sequence[str],
    *,
    with_label: bool,
    with_weight: bool,
    where: str,
    first_entry: int,
) -> dict[str, np.ndarray]:
    out = {f: np.asarray(raw[f], dtype=np.float32) for f in features}
    check_finite(out, features, where, first_entry)
    n = len(next(iter(raw.values()))) if raw else 0
    if with_label:
        label = np.asarray(raw[LABEL])
        check_labels(label, f"{where}: branch {LABEL!r}", first_entry)
        out[LABEL] = label.astype(np.int8)
    if with_weight:
        out[WEIGHT] = (
            np.asarray(raw[WEIGHT], dtype=np.float32)
            if WEIGHT in raw
            else np.ones(n, dtype=np.float32)
        )
        check_finite(out, [WEIGHT], where, first_entry)
    return out


def _branches_to_read(
    t: Any, features: tuple[str, ...], with_label: bool, with_weight: bool, where: str
) -> list[str]:
    names = list(features)
    if with_label:
        names.append(LABEL)
    if with_weight and WEIGHT in t.keys(recursive=False):
        names.append(WEIGHT)
    check_branches(t, names, where)
    return names


def read_events(
    path: str | Path,
    features: Sequence[str] | None = None,
    *,
    tree: str = TREE_NAME,
    with_label: bool = True,
    with_weight: bool = False,
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> dict[str, np.ndarray]:
    """Read events from a ROOT file: feature name -> float32 array (n,).

    ``features``: names from the schema, or None for every feature branch the tree has.
    Adds ``label`` (int8, checked to be 0/1) if ``with_label``, and ``weight`` (float32; ones
    when the file has none) if ``with_weight``.  ``entry_start``/``entry_stop`` select a range
    of entries as in uproot.
    """
    where = _where(path)
    with open_root(path) as f:
        t = get_tree(f, tree, where)
        feats = _resolve_features(features, t, where)
        names = _branches_to_read(t, feats, with_label, with_weight, where)
        try:
            raw = t.arrays(names, library="np", entry_start=entry_start, entry_stop=entry_stop)
        except Exception as exc:
            raise InputError(
                f"{where}: cannot read tree {tree!r} (truncated or corrupt?): {exc}"
            ) from exc
        start = entry_start or 0
        if start < 0:
            start += t.num_entries
        return _cast_events(
            raw,
            feats,
            with_label=with_label,
            with_weight=with_weight,
            where=where,
            first_entry=max(start, 0),
        )


def iterate_events(
    path: str | Path,
    features: Sequence[str] | None = None,
    *,
    step_size: int | str = 100_000,
    tree: str = TREE_NAME,
    with_label: bool = True,
    with_weight: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Read a ROOT event file in chunks of ``step_size`` entries (uproot.iterate).

    Yields dictionaries like :func:`read_events`.  The file is checked before the first chunk.
    """
    where = _where(path)
    with open_root(path) as f:
        t = get_tree(f, tree, where)
        feats = _resolve_features(features, t, where)
        names = _branches_to_read(t, feats, with_label, with_weight, where)
    first = 0
    chunks = uproot.iterate({os.fspath(path): tree}, names, step_size=step_size, library="np")
    while True:
        try:
            raw = next(chunks)
        except StopIteration:
            return
        except Exception as exc:
            raise InputError(
                f"{where}: cannot read tree {tree!r} after entry {first} (truncated or corrupt?): "
                f"{exc}"
            ) from exc
        out = _cast_events(
            raw,
            feats,
            with_label=with_label,
            with_weight=with_weight,
            where=where,
            first_entry=first,
        )
        first += len(raw[names[0]])
        yield out


def count_events(path: str | Path, tree: str = TREE_NAME) -> int:
    """Number of entries of the tree ``tree`` in a ROOT file."""
    with open_root(path) as f:
        return int(get_tree(f, tree, _where(path)).num_entries)


def branch_names(path: str | Path, tree: str = TREE_NAME) -> tuple[str, ...]:
    """Names of the branches of the tree ``tree`` in a ROOT file."""
    with open_root(path) as f:
        return tuple(get_tree(f, tree, _where(path)).keys())


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata stored in an event file; an empty dict if it has none."""
    where = _where(path)
    with open_root(path) as f:
        keys = {k.split(";")[0] for k in f.keys(recursive=False)}
        if METADATA_KEY not in keys:
            return {}
        try:
            text = str(f[METADATA_KEY])
            meta = json.loads(text)
        except Exception as exc:
            raise InputError(f"{where}: key {METADATA_KEY!r} is not a JSON string: {exc}") from exc
    if not isinstance(meta, dict):
        raise InputError(
            f"{where}: key {METADATA_KEY!r} holds {type(meta).__name__}, expected a dict"
        )
    return meta
