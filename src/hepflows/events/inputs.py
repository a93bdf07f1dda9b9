"""Analysis inputs: many ROOT files per process (TTree or RNTuple), labels, weights, a selection,
converted into the project's train/val/test event files in one streaming pass.

``data.inputs`` lists entries ``{path: <file or glob>, label: 0|1 | label_branch: name,
weight: <factor>, tree: name}``; ``data.path`` is the shorthand for one entry.  The steps:

1. **Check, before writing anything.**  Every pattern is expanded (sorted; one that matches
   nothing is an error), every file is opened, its ntuple found (TTree or RNTuple), every
   configured feature looked up as ``branch_map[feature]`` or else a branch of its own name,
   and it, the label branch, the weight branch and the branches of the selection checked to
   exist and hold one number per entry.  Each file's size and SHA-256 are taken.
2. **Stream.**  Files in order, chunks of ``step_size`` entries: the selection (a
   :class:`~hepflows.events.selection.Selection`) keeps events, features become float32,
   labels are checked 0/1, ``weight = factor * weight_branch`` (float64, stored float32) checked
   finite; each event goes to the split drawn from the seed, the file's SHA-256 and its entry
   number (:func:`hepflows.events.convert.split_key`): the splits do not depend on the order of
   the files, on chunking or on the selection.
3. **Provenance.**  Every output file's metadata lists each input file (path, size, SHA-256,
   TTree or RNTuple, entries read and selected, label, weight factor, sum of weights and of
   their squares, the Kish effective sample size ``input_effective_size``, negative weights),
   the selection's counts before and after, the ``derived`` expressions, the
   ``integer_features`` (every selected value an integer: modelled as discrete, see
   :func:`hepflows.preprocess.find_discrete`) and, when weighted, ``input_effective_size`` of
   all the selected events together and ``split_weights``: per split and process the events,
   sum of weights, negative weights and Kish effective size.

All outputs appear together or, on any error, none.  Module level imports only the standard
library and hepflows modules that do the same (the typed ``data`` settings of
:mod:`hepflows.settings`): the Snakefile expands the patterns with :func:`input_paths` while
parsing.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepflows.feasibility import Tally
from hepflows.settings import DataSettings
from hepflows.settings import InputFile as InputEntry

if TYPE_CHECKING:
    import numpy as np

    from hepflows.events.convert import SplitRouter, SplitRule
    from hepflows.events.selection import Expression, Selection
    from hepflows.events.wild import WildValueGuard

__all__ = [
    "InputFile",
    "convert_inputs",
    "file_checksum",
    "input_entries",
    "input_paths",
    "resolve_inputs",
]

log = logging.getLogger("hepflows")

_GLOB_CHARS = set("*?[")


def input_entries(data: DataSettings) -> tuple[InputEntry, ...]:
    """The entries of ``data.inputs``, or the one entry of the shorthand ``data.path``."""
    if data.inputs and data.path:
        from hepflows.errors import InputError

        raise InputError(
            "data.path and data.inputs: give one of them (path is one input's shorthand)"
        )
    if data.path:
        return (InputEntry(path=data.path),)
    return data.inputs


def _expand(pattern: str) -> list[str]:
    if _GLOB_CHARS & set(pattern):
        return sorted(glob.glob(os.path.expanduser(pattern)))
    return [os.path.expanduser(pattern)]


def input_paths(data: DataSettings) -> list[str]:
    """Every input file of the config's data section, for the workflow's ``ingest`` rule.

    A pattern that matches nothing is returned as it is, so the workflow names it missing."""
    paths: list[str] = []
    for entry in input_entries(data):
        paths += _expand(entry.path) or [entry.path]
    return paths


def file_checksum(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex (as ``sha256sum`` prints it)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class InputFile:
    """One input file and how to read it; ``size``, ``sha256``, ``kind``, ``entries`` once checked."""

    path: str
    entry: int  # index in data.inputs
    tree: str
    label: int | None
    label_branch: str | None
    weight: float | None
    size: int = 0
    sha256: str = ""
    kind: str = ""
    entries: int = 0
    stats: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The provenance of this file, as stored in the outputs' metadata."""
        return {
            "path": self.path,
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "tree": self.tree,
            "entries": self.entries,
            "label": self.label,
            "label_branch": self.label_branch,
            "weight": self.weight,
            **self.stats,
        }


def resolve_inputs(data: DataSettings) -> list[InputFile]:
    """Expand the patterns of ``data.inputs`` (or ``data.path``) into files, in order; an
    entry without its own ``tree`` or label reads ``data.tree`` and ``data.label_branch``."""
    from hepflows.errors import InputError

    entries = input_entries(data)
    if not entries:
        raise InputError("data: source root needs data.path or data.inputs")
    files: list[InputFile] = []
    seen: dict[str, str] = {}
    for i, e in enumerate(entries):
        key = f"data.inputs[{i}]" if data.inputs else "data.path"
        pattern = e.path
        if not pattern:
            raise InputError(f"{key}: expected a path (a file or a glob such as 'ttbar_*.root')")
        label = e.label
        if label is not None and e.label_branch:
            raise InputError(f"{key} ({pattern}): give label or label_branch, not both")
        if label is not None and (isinstance(label, bool) or label not in (0, 1)):
            raise InputError(f"{key} ({pattern}): label must be 0 or 1, got {label!r}")
        weight = e.weight
        if weight is not None and (
            isinstance(weight, bool)
            or not isinstance(weight, (int, float))
            or not math.isfinite(weight)
        ):
            raise InputError(f"{key} ({pattern}): weight must be a finite number, got {weight!r}")
        label_branch = None if label is not None else e.label_branch or data.label_branch
        matches = _expand(pattern)
        if not matches or (
            matches == [pattern] and not _GLOB_CHARS & set(pattern) and not Path(pattern).exists()
        ):
            what = "no file matches the pattern" if _GLOB_CHARS & set(pattern) else "no such file"
            raise InputError(f"{key}: {pattern}: {what}")
        for p in matches:
            real = os.path.realpath(p)
            if real in seen:
                raise InputError(
                    f"{key}: {p} is already an input (as {seen[real]}); each file may be read once"
                )
            seen[real] = p
            files.append(
                InputFile(
                    path=p,
                    entry=i,
                    tree=e.tree or data.tree,
                    label=label,
                    label_branch=label_branch,
                    weight=None if weight is None else float(weight),
                )
            )
    labelled = {f.label is not None or f.label_branch is not None for f in files}
    if len(labelled) > 1:
        raise InputError(
            "data.inputs: some inputs have a label (label or label_branch) and "
            "others none; give every input one"
        )
    return files


def convert_inputs(
    files: Sequence[InputFile],
    outputs: Mapping[str, str | Path],
    *,
    features: Sequence[str],
    seed: int,
    branch_map: Mapping[str, str] | None = None,
    weight_branch: str | None = None,
    selection: str | None = None,
    derived: Mapping[str, str] | None = None,
    split: Mapping[str, Any] | None = None,
    limit: int | None = None,
    step_size: int = 100_000,
    compression: str | None = "lz4",
    metadata: Mapping[str, object] | None = None,
    wild_values: str = "refuse",
    on_negative: Callable[[str, int], None] | None = None,
    on_splits: Callable[[Mapping[str, Mapping[int, Tally]], bool], None] | None = None,
) -> dict[str, int]:
    """Convert the checked-and-streamed ``files`` (see the module) into one event file per
    split.  ``limit``: at most this many entries of each file.  ``derived``: feature -> expression
    of branches (:class:`~hepflows.events.selection.Expression`), computed after the selection.
    ``wild_values``: ``"refuse"`` or ``"drop"`` features absurd for their branch
    (:mod:`hepflows.events.wild`).  Returns events per split.

    ``on_negative(file, count)`` is called for each chunk with negative weights (it may
    raise: the run stops at once); ``on_splits(tallies, weighted)`` with the events, sums of
    weights and of their squares per split and label (:class:`hepflows.feasibility.Tally`)
    once every event is routed, before the outputs appear (it may raise: nothing is left)."""
    from hepflows.errors import InputError
    from hepflows.events.convert import SplitRouter, split_writers
    from hepflows.events.wild import WildValueGuard
    from hepflows.kish import kish_size

    plan = _plan(files, outputs, features, branch_map, weight_branch, selection, derived, split)
    # 1. check every file before writing anything
    for f in files:
        _check_file(f, plan)
    source = {
        "source_format": "root",
        "branch_map": plan.fmap,
        "weight_branch": weight_branch,
        "selection": selection,
        "derived": dict(derived or {}),
        "limit": limit,
        "split_seed": seed,
    }
    writers = split_writers(outputs, compression, metadata, source)
    tallies = _Tallies(plan.features, outputs)
    guard = WildValueGuard({b: f"feature {f!r}" for f, b in plan.fmap.items()}, wild_values, seed)
    integers = set(plan.features)  # the features whose every selected value is an integer
    with _writers_open(writers), SplitRouter(plan.rule, writers) as router:
        router.tally = tallies
        router.template = plan.template()
        # 2. stream
        for f in files:
            stop = f.entries if limit is None else min(limit, f.entries)
            _stream_file(f, plan, stop, step_size, seed, guard, router, integers, on_negative)
        before = sum(f.stats["read"] for f in files)
        after = sum(f.stats["selected"] for f in files)
        if after == 0:
            raise InputError(
                f"data.selection {selection!r}: no event of {before} passes; nothing to convert"
            )
        counts = router.finish()
        if on_splits is not None:
            on_splits(tallies.by_split, plan.weighted)
        # 3. provenance
        split_weights = tallies.split_weights()
        if plan.weighted:
            _log_split_weights(split_weights)
        rule_text = plan.rule.description.replace(
            "by a hash of the row index", "by a hash of (seed, file SHA-256, entry number)"
        )
        for writer in writers.values():
            writer.metadata.update(
                inputs=[f.record() for f in files],
                split_rule=rule_text,
                selection_counts={"before": before, "after": after},
                wild_values_dropped=guard.dropped,
                integer_features=[feat for feat in plan.features if feat in integers],
            )
            if plan.weighted:
                total_w = sum(f.stats["sum_weights"] for f in files)
                total_w2 = sum(f.stats["sum_weights_squared"] for f in files)
                writer.metadata["input_effective_size"] = kish_size(total_w, total_w2)
                writer.metadata["split_weights"] = split_weights
    if plan.cut is not None:
        log.info(
            "selection %r: %d of %d events pass (%.2f%%)",
            selection,
            after,
            before,
            100.0 * after / before,
        )
    return counts


@dataclass(frozen=True)
class _Plan:
    """What every file is read for: the features (``fmap``: feature -> branch, for those not
    ``exprs``, the derived expressions), the selection ``cut``, the branches read as
    collections (``jagged``), the weight branch, whether events are weighted and labelled, and
    the split rule."""

    features: list[str]
    bmap: dict[str, str]
    exprs: dict[str, Expression]
    fmap: dict[str, str]
    cut: Selection | None
    jagged: set[str]
    weight_branch: str | None
    weighted: bool
    labelled: bool
    rule: SplitRule

    def template(self) -> dict[str, Any]:
        """The router's empty event dict: the columns every output file gets."""
        import numpy as np

        from hepflows.events.schema import LABEL, WEIGHT

        template = {feat: np.empty(0, np.float32) for feat in self.features}
        if self.labelled:
            template[LABEL] = np.empty(0, np.int8)
        if self.weighted:
            template[WEIGHT] = np.empty(0, np.float32)
        return template

    def columns(self, f: InputFile) -> tuple[list[str], dict[str, str]]:
        """The branches to read from ``f``, and for each what it is used for (for messages)."""
        uses: dict[str, list[str]] = {}
        for feat, b in self.fmap.items():
            uses.setdefault(b, []).append(
                f"feature {feat!r}" + (" via data.branch_map" if feat in self.bmap else "")
            )
        if f.label_branch is not None:
            uses.setdefault(f.label_branch, []).append("the label (label_branch)")
        if self.weight_branch is not None:
            uses.setdefault(self.weight_branch, []).append("the weight (data.weight_branch)")
        for name in self.cut.names if self.cut else ():
            uses.setdefault(name, []).append("data.selection")
        for feat, e in self.exprs.items():
            for name in e.names:
                uses.setdefault(name, []).append(f"derived.{feat}")
        return list(uses), {c: ", ".join(u) for c, u in uses.items()}


def _plan(
    files: Sequence[InputFile],
    outputs: Mapping[str, str | Path],
    features: Sequence[str],
    branch_map: Mapping[str, str] | None,
    weight_branch: str | None,
    selection: str | None,
    derived: Mapping[str, str] | None,
    split: Mapping[str, Any] | None,
) -> _Plan:
    """The checked plan of the conversion: a branch map naming no feature, a selection or
    derived expression that does not parse, a feature read as a collection, or the HIGGS split
    convention is refused here, before any file is opened."""
    from hepflows.errors import InputError
    from hepflows.events.convert import SplitRule
    from hepflows.events.selection import Expression, Selection

    features = list(features)
    bmap = dict(branch_map or {})
    unknown = [k for k in bmap if k not in features]
    if unknown:
        raise InputError(
            f"data.branch_map: {unknown} are not features; the features are {features}"
        )
    exprs = {feat: Expression(text, f"derived.{feat}") for feat, text in (derived or {}).items()}
    fmap = {f: bmap.get(f, f) for f in features if f not in exprs}
    cut = Selection(selection) if selection else None
    for e in (cut, *exprs.values()):
        if e is not None:
            e.check(e.key)
    # branches read as collections (name[i], len(name)): read through awkward, not numpy
    jagged = {n for e in (cut, *exprs.values()) if e is not None for n in e.jagged}
    both = sorted({b for b in fmap.values() if b in jagged})
    if both:
        raise InputError(
            f"features: branch(es) {both} are read as collections (name[i], len(name)) in "
            "data.selection or derived, so they cannot be features of one number per event; "
            'model an element instead, e.g. derived: {lead: "name[0]"}'
        )
    rule = SplitRule(split, list(outputs))
    if rule.test_rows:
        raise InputError("split: the 'higgs' convention is for the HIGGS CSV; give fractions")
    return _Plan(
        features=features,
        bmap=bmap,
        exprs=exprs,
        fmap=fmap,
        cut=cut,
        jagged=jagged,
        weight_branch=weight_branch,
        weighted=weight_branch is not None or any(f.weight is not None for f in files),
        labelled=bool(files) and (files[0].label is not None or files[0].label_branch is not None),
        rule=rule,
    )


def _check_file(f: InputFile, plan: _Plan) -> None:
    """Open ``f``, find its ntuple and check every branch ``plan`` reads; take its kind,
    entries, size and SHA-256."""
    from hepflows.errors import InputError
    from hepflows.events.reader import check_columns, get_ntuple, ntuple_kind, open_root

    where = f.path
    with open_root(f.path) as rf:
        t = get_ntuple(rf, f.tree, where)
        f.kind = ntuple_kind(t)[0]
        cols, uses = plan.columns(f)
        check_columns(t, cols, where, uses, jagged=plan.jagged)
        f.entries = int(t.num_entries)
    if f.entries == 0:
        name = "tree" if f.kind == "TTree" else "RNTuple"
        raise InputError(f"{where}: {name} {f.tree!r} has no entries, expected events to convert")
    f.size = Path(f.path).stat().st_size
    f.sha256 = file_checksum(f.path)
    log.info(
        "input %s: %s %r, %d entries, %d bytes, sha256 %s",
        f.path,
        f.kind,
        f.tree,
        f.entries,
        f.size,
        f.sha256,
    )


def _stream_file(
    f: InputFile,
    plan: _Plan,
    stop: int,
    step_size: int,
    seed: int,
    guard: WildValueGuard,
    router: SplitRouter,
    integers: set[str],
    on_negative: Callable[[str, int], None] | None,
) -> None:
    """Read ``f``'s first ``stop`` entries in chunks, select, convert and route each event to
    its split; ``f.stats`` gets the entries read and selected (and the sums of weights);
    ``integers`` loses every feature with a value that is not an integer."""
    import numpy as np

    from hepflows.events.convert import split_key
    from hepflows.kish import kish_size

    key = split_key(seed, f.sha256)
    sums = Tally()  # the file's weights
    n_read = n_sel = 0
    for raw, entries, n, word in _selected_chunks(f, plan, stop, step_size, guard):
        chunk = _events(raw, entries, f, plan, word)
        for feat in integers.copy():  # a multiplicity, a charge, a b-tag bin
            if not np.array_equal(chunk[feat], np.round(chunk[feat])):
                integers.discard(feat)
        if plan.weighted:
            negative = _add_weights(sums, chunk.pop(_RAW_WEIGHT))
            if negative and on_negative is not None:
                on_negative(f.path, negative)
        router.add_keyed(chunk, entries, key)
        n_read += n
        n_sel += len(entries)
    f.stats = {"read": n_read, "selected": n_sel}
    if plan.weighted:
        f.stats.update(
            sum_weights=sums.sum_w,
            sum_weights_squared=sums.sum_w2,
            input_effective_size=kish_size(sums.sum_w, sums.sum_w2),
            negative_weights=sums.negative,
        )
    log.info(
        "input %s: %d entries read, %d selected%s",
        f.path,
        n_read,
        n_sel,
        f", sum of weights {sums.sum_w:.6g}, {sums.negative} negative, effective sample size "
        f"(Kish) {kish_size(sums.sum_w, sums.sum_w2):.0f}"
        if plan.weighted
        else "",
    )


def _selected_chunks(
    f: InputFile, plan: _Plan, stop: int, step_size: int, guard: WildValueGuard
) -> Iterator[tuple[dict[str, Any], np.ndarray, int, str]]:
    """``(columns, entry numbers, entries read, "branch" or "field")`` of each chunk of ``f``,
    after the selection and the wild-value guard."""
    import numpy as np

    from hepflows.errors import InputError
    from hepflows.events.prefetch import prefetch
    from hepflows.events.reader import get_ntuple, ntuple_kind, open_root

    where, jagged = f.path, plan.jagged
    with open_root(f.path) as rf:
        t = get_ntuple(rf, f.tree, where)
        kind, word = ntuple_kind(t)
        name = f"{'tree' if kind == 'TTree' else 'RNTuple'} {f.tree!r}"
        cols, _ = plan.columns(f)
        # uproot reads and decompresses the next chunk in a thread meanwhile.
        reading = t.iterate(
            cols, step_size=step_size, library="ak" if jagged else "np", entry_stop=stop
        )
        with contextlib.closing(prefetch(reading, depth=2)) as chunks:
            first = 0
            while first < stop:
                try:
                    raw = next(chunks)
                except StopIteration:
                    break
                except Exception as exc:
                    raise InputError(
                        f"{where}: cannot read {name} after entry {first} "
                        f"(truncated or corrupt?): {exc}"
                    ) from exc
                if jagged:
                    raw = _columns(raw, jagged)
                n = len(raw[cols[0]])
                entries = np.arange(first, first + n, dtype=np.uint64)
                if plan.cut is not None:
                    keep = np.flatnonzero(plan.cut.mask(raw, n, where, entries))
                    raw, entries = _take(raw, keep, jagged), entries[keep]
                if (sane := guard.keep(raw, entries, where, word)) is not None:
                    raw, entries = _take(raw, sane, jagged), entries[sane]
                yield raw, entries, n, word
                first += n


def _take(raw: Mapping[str, Any], index: Any, jagged: set[str]) -> dict[str, Any]:
    """The events ``index`` (indices or a mask) of every column."""
    import numpy as np

    return {c: v[index] if c in jagged else np.asarray(v)[index] for c, v in raw.items()}


#: the events' weights in float64, beside the stored float32 ones, until they are summed
_RAW_WEIGHT = "weight float64"


def _events(
    raw: Mapping[str, Any], entries: Any, f: InputFile, plan: _Plan, word: str
) -> dict[str, Any]:
    """The output columns of one selected chunk: features (float32, finite), the label (int8,
    0 or 1) and the weight (factor times weight branch; float32, and float64 under
    :data:`_RAW_WEIGHT`)."""
    import numpy as np

    from hepflows.events.checks import check_finite_values, check_labels
    from hepflows.events.schema import LABEL, WEIGHT

    where, m = f.path, len(entries)
    chunk: dict[str, Any] = {}
    for feat in plan.features:
        if feat in plan.exprs:
            values = plan.exprs[feat].values(raw, m, where, entries)
            chunk[feat] = values.astype(np.float32)
            check_finite_values(chunk[feat], where, f"derived {feat!r}", entries=entries)
            continue
        b = plan.fmap[feat]
        chunk[feat] = np.asarray(raw[b], dtype=np.float32)
        what = f"{word} {b!r} (feature {feat!r})"
        check_finite_values(chunk[feat], where, what, entries=entries)
    if f.label_branch is not None:
        lab = np.asarray(raw[f.label_branch])
        check_labels(lab, f"{where}: {word} {f.label_branch!r} (the label)", entries=entries)
        chunk[LABEL] = lab.astype(np.int8)
    elif f.label is not None:
        chunk[LABEL] = np.full(m, f.label, dtype=np.int8)
    if plan.weighted:
        w = _weights(raw, entries, f, plan.weight_branch, word)
        chunk[WEIGHT] = w.astype(np.float32)
        chunk[_RAW_WEIGHT] = w
    return chunk


def _weights(
    raw: Mapping[str, Any], entries: Any, f: InputFile, weight_branch: str | None, word: str
) -> Any:
    """``f.weight`` (1 when None) times the weight branch (when given), float64, finite."""
    import numpy as np

    from hepflows.errors import InputError
    from hepflows.events.checks import check_finite_values

    w = np.full(len(entries), 1.0 if f.weight is None else f.weight)
    if weight_branch is not None:
        wb = np.asarray(raw[weight_branch], dtype=np.float64)
        what = f"{word} {weight_branch!r} (the weight)"
        check_finite_values(wb, f.path, what, entries=entries)
        w = w * wb
    if not np.isfinite(w).all():
        i = int(np.argmax(~np.isfinite(w)))
        raise InputError(
            f"{f.path}: weight {w[i]!r} at entry {int(entries[i])} "
            "is not finite (factor times weight branch)"
        )
    return w


def _add_weights(t: Tally, w: np.ndarray) -> int:
    """Add the events of the float64 weights ``w`` to ``t``; returns how many are negative."""
    import numpy as np

    negative = int((w < 0).sum())
    t.events += len(w)
    t.sum_w += float(w.sum())
    t.sum_w2 += float(np.square(w).sum())
    t.negative += negative
    return negative


class _Tallies:
    """The router's tally: events, sums of weights and of their squares and negative weights
    per split and label (:class:`hepflows.feasibility.Tally`)."""

    def __init__(self, features: Sequence[str], outputs: Mapping[str, Any]) -> None:
        self.first = features[0]
        self.by_split: dict[str, dict[int, Tally]] = {name: {} for name in outputs}

    def __call__(self, split_name: str, part: Mapping[str, Any]) -> None:
        import numpy as np

        from hepflows.events.schema import LABEL, WEIGHT

        labels = part[LABEL] if LABEL in part else np.zeros(len(part[self.first]), np.int8)
        for c in np.unique(labels).tolist():
            t = self.by_split[split_name].setdefault(int(c), Tally())
            mine = labels == c
            if WEIGHT in part:
                _add_weights(t, part[WEIGHT][mine].astype(np.float64))
            else:  # unweighted: each event counts 1
                n = int(mine.sum())
                t.events += n
                t.sum_w += float(n)
                t.sum_w2 += float(n)

    def split_weights(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per split and process: what each step's weighted statistics will stand on."""
        return {
            name: {
                ("signal" if c == 1 else "background"): {
                    "events": t.events,
                    "sum_weights": t.sum_w,
                    "negative_weights": t.negative,
                    "kish_effective_size": t.effective_size,
                }
                for c, t in sorted(per.items(), reverse=True)
            }
            for name, per in self.by_split.items()
        }


def _log_split_weights(split_weights: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
    for name, per in split_weights.items():
        for process, v in per.items():
            log.info(
                "split %s, %s: %d events, sum of weights %.6g, %d negative, effective "
                "sample size (Kish) %.0f",
                name,
                process,
                v["events"],
                v["sum_weights"],
                v["negative_weights"],
                v["kish_effective_size"],
            )


def _columns(chunk: Any, jagged: set[str]) -> dict[str, Any]:
    """An awkward chunk's fields: numpy arrays (n,), awkward arrays (n, var) for ``jagged``."""
    import awkward as ak
    import numpy as np

    return {c: chunk[c] if c in jagged else np.asarray(ak.to_numpy(chunk[c])) for c in chunk.fields}


def _writers_open(writers: Mapping[str, Any]) -> Any:
    from hepflows.events.writer import all_or_nothing

    return all_or_nothing(list(writers.values()))
