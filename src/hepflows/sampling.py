"""Chunked, seeded generation of events, streamed to ROOT.

Events are produced in fixed-size chunks; chunk ``k`` of a run draws its labels and its latent
points from generators seeded by ``(seed, k)`` alone.  So a sample is reproducible bit for bit,
any range of chunks (a shard) can be regenerated on its own, and memory stays bounded by a few
chunks whatever the total.

The fast path of :func:`sample_to_root`:

- **Overlap.** The flow draws chunk ``k + 1`` while a writer thread maps chunk ``k`` back to
  physical units and writes it (numpy and the compressors release the GIL); a queue of
  :data:`QUEUE_CHUNKS` bounds the chunks in flight, so memory stays flat in the number of events.
- **Precision.** ``precision="auto"`` runs the conditioner networks in bfloat16 autocast on a
  CUDA device that supports it (every transform's element-wise map and log-determinant stays in
  float32, see :class:`hepflows.flows.coupling.Coupling`), and in float32 elsewhere.  On the
  CPU the flow's own fused, tiled float32 path is the fast one (see :mod:`hepflows.flows.fused`).
- **Large chunks.** Chunks of ``1e5``-``1e6`` events keep a GPU busy; on the CPU the flow tiles
  a chunk itself, so the chunk size only sets the ROOT basket size.
- **Asynchronous copies** (``fast``, on by default on CUDA only, or as ``HEPFLOWS_FAST_PATH``
  says): a chunk is copied into pinned host memory with a non-blocking copy and its non-finite
  count read there, so the GPU goes on to the next chunk at once; the writer thread waits for
  the copy (a CUDA event), makes the check and writes.  A broken chunk then raises on the
  writer's side; the file is never completed either way.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np
import torch

from hepflows.ensemble import as_members, pick
from hepflows.errors import InputError
from hepflows.events.schema import LABEL
from hepflows.preprocess import Preprocessor
from hepflows.training import fast_path_default

if TYPE_CHECKING:
    from typing import TypeAlias

    from hepflows.flows.model import DensityModel

    #: One model, or an ensemble's members (chunk ``c`` drawn by member ``c mod k``).
    Flows: TypeAlias = DensityModel | Sequence[DensityModel]

__all__ = [
    "PRECISIONS",
    "QUEUE_CHUNKS",
    "chunk_seed",
    "chunk_labels",
    "training_signal_fraction",
    "resolve_precision",
    "precision_context",
    "sample_chunk",
    "iter_chunks",
    "sample_to_root",
]

log = logging.getLogger(__name__)

#: Accepted values of ``precision``.
PRECISIONS = ("auto", "float32", "bf16")

#: Chunks drawn but not yet written (besides the one being written): bounds memory.
QUEUE_CHUNKS = 2


def chunk_seed(seed: int, chunk: int) -> int:
    """A 63-bit seed for chunk ``chunk`` of a run with ``seed``, well mixed by SeedSequence."""
    return int(
        np.random.SeedSequence([seed, chunk]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1
    )


def training_signal_fraction(
    label: np.ndarray, weight: np.ndarray | None = None, where: str = "training data"
) -> float:
    """The signal fraction of the training data, ``sampling.signal_fraction: null``'s value.

    Unweighted, the fraction of events with label 1; with event weights ``w`` (n,), the
    weighted fraction ``sum(w[label == 1]) / sum(w)``, the signal share of the cross-section
    the flow learns.  Negative weights (NLO) are counted with their sign; each process's sum
    of weights must be positive (a process of negative total is no probability), else an
    InputError naming ``where``.  ``label`` (n,) holds 0/1.
    """
    label = np.asarray(label).reshape(-1)
    if weight is None:
        return float(np.mean(label == 1))
    w = np.asarray(weight, dtype=np.float64).reshape(-1)
    processes = {"signal": label == 1, "background": label == 0}
    sums = {name: float(w[events].sum()) for name, events in processes.items()}
    bad = [name for name, events in processes.items() if events.any() and not sums[name] > 0]
    if bad:
        raise InputError(
            f"{where}: the weights of the {' and the '.join(bad)} events sum to "
            + " and ".join(f"{sums[name]:g}" for name in bad)
            + "; the weighted signal fraction needs a positive sum of weights per process "
            "(too many negative weights?); or set sampling.signal_fraction"
        )
    return sums["signal"] / (sums["signal"] + sums["background"])


_PROCESSES = {0: "background (label 0)", 1: "signal (label 1)"}


def check_trained_labels(
    signal_fraction: float, meta: Mapping[str, Any], where: str = "the model"
) -> None:
    """Refuse to generate a process (a condition) the flow never saw in training.

    ``meta`` is the model file's: ``labels`` (the labels of its training events) or, in files
    without it, ``signal_fraction`` (0 or 1 meaning one process only).  A conditional flow asked
    for a label it never saw would still generate, but events of nothing it learnt.
    """
    labels = meta.get("labels")
    if labels is None:
        trained = meta.get("signal_fraction")
        labels = [1] if trained == 1 else [0] if trained == 0 else [0, 1]
    asked = {1} if signal_fraction >= 1 else {0} if signal_fraction <= 0 else {0, 1}
    unseen = sorted(asked - {int(v) for v in labels})
    if unseen:
        seen = " and ".join(_PROCESSES[int(v)] for v in sorted(labels))
        raise InputError(
            f"{where}: sampling.signal_fraction {signal_fraction:g} asks for "
            + " and ".join(_PROCESSES[v] for v in unseen)
            + f" events, a condition the model never saw: it was trained on {seen} events "
            "only. Set sampling.signal_fraction to what it was trained on, or train on both"
        )


def chunk_labels(n: int, signal_fraction: float, seed: int, chunk: int) -> np.ndarray:
    """Process labels (n,) int8 of one chunk: 1 signal with probability ``signal_fraction``."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk, 1]))
    return (rng.random(n) < signal_fraction).astype(np.int8)


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``"float32"`` or ``"bf16"``: ``"auto"`` is bf16 on a CUDA device that supports it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {list(PRECISIONS)}, got {precision!r}")
    device = torch.device(device)
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "float32"


def precision_context(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager:
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for float32)."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


#: The selection's check of preprocessed events (n, d) float32 and labels: (n,) bool.
Cut = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


@overload
def _draw(
    flow: Flows,
    n: int,
    *,
    seed: int,
    chunk: int,
    signal_fraction: float | None,
    device: torch.device,
    precision: str,
    asynchronous: Literal[False] = ...,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = ...,
    cut: Cut | None = ...,
    counts: dict[int, list[int]] | None = ...,
) -> tuple[np.ndarray, np.ndarray | None]: ...


@overload
def _draw(
    flow: Flows,
    n: int,
    *,
    seed: int,
    chunk: int,
    signal_fraction: float | None,
    device: torch.device,
    precision: str,
    asynchronous: bool,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = ...,
    cut: Cut | None = ...,
    counts: dict[int, list[int]] | None = ...,
) -> _Chunk: ...


def _draw(
    flow: Flows,
    n: int,
    *,
    seed: int,
    chunk: int,
    signal_fraction: float | None,
    device: torch.device,
    precision: str,
    asynchronous: bool = False,
    bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
    cut: Cut | None = None,
    counts: dict[int, list[int]] | None = None,
) -> _Chunk:
    """Latent-to-data step of a chunk: preprocessed events (n, d) float32 and labels (or None);
    with ``asynchronous`` the events as a :class:`_Pending` copy.  With ``bounds`` (the
    support in the latent space, :func:`hepflows.support.latent_bounds`) or ``cut`` (the
    selection, :func:`hepflows.support.data_cut`) events outside are redrawn, and ``counts``
    tallies {label: [drawn, accepted]}.  ``flow`` may be an ensemble's members: chunk ``c``
    is drawn by member ``c mod k`` (:mod:`hepflows.ensemble`)."""
    flow = pick(flow, chunk)
    generator = torch.Generator(device=device).manual_seed(chunk_seed(seed, chunk))
    context = None
    labels = None
    if signal_fraction is not None:
        labels = chunk_labels(n, signal_fraction, seed, chunk)
        context = torch.from_numpy(labels.astype(np.float32)).to(device).unsqueeze(1)
    with precision_context(precision, device):
        y = flow.sample(n, context, generator=generator)
    if bounds is not None or cut is not None:
        y = _redraw_outside(
            flow,
            y,
            context,
            bounds,
            cut,
            seed=seed,
            chunk=chunk,
            precision=precision,
            counts=counts,
        )
    # one row test on the device; float32 -> float64 happens exactly in Preprocessor.inverse
    n_bad = (~torch.isfinite(y).all(dim=1)).sum()
    if asynchronous:
        return _Pending(y, n_bad, chunk), labels
    _check_finite(int(n_bad), chunk)
    return y.float().cpu().numpy(), labels


#: Redraws of a chunk's rejected events before the support is deemed out of the model's reach.
MAX_REDRAWS = 100


def _redraw_outside(
    flow: DensityModel,
    y: torch.Tensor,
    context: torch.Tensor | None,
    bounds: tuple[torch.Tensor, torch.Tensor] | None,
    cut: Cut | None,
    *,
    seed: int,
    chunk: int,
    precision: str,
    counts: dict[int, list[int]] | None,
) -> torch.Tensor:
    """``y`` (n, d) with every finite event outside ``bounds`` (low, high: (P, d), row p for
    label p, or one row) or failing ``cut`` replaced by a fresh draw of the same label, until
    all are inside.

    Redraw ``k`` of chunk ``c`` is seeded by ``(seed, c, 2, k)``, so the chunk stays a function
    of ``(seed, c)`` alone.  Non-finite events are left for the finiteness check to refuse.
    """
    labels = (
        torch.zeros(len(y), dtype=torch.long, device=y.device)
        if context is None
        else context[:, 0].long()
    )
    todo = torch.arange(len(y), device=y.device)
    for attempt in range(1, MAX_REDRAWS + 2):
        part = y[todo]
        finite = torch.isfinite(part).all(dim=1)
        ok = finite.clone()
        if bounds is not None:
            low, high = bounds
            r = labels[todo] if low.shape[0] > 1 else torch.zeros_like(todo)
            ok &= ((part >= low[r]) & (part <= high[r])).all(dim=1)
        if cut is not None and bool(ok.any()):
            # only the events inside the box go through the inverse, on the host
            rows = ok.nonzero()[:, 0]
            kinds = None if context is None else labels[todo][rows].cpu().numpy().astype(np.int8)
            passed = cut(part[rows].float().cpu().numpy(), kinds)
            ok[rows] = torch.from_numpy(np.array(passed, bool)).to(ok.device)
        ok |= ~finite
        if counts is not None:
            lab = labels[todo]
            for label in lab.unique().tolist():
                mine = lab == label
                tally = counts.setdefault(int(label), [0, 0])
                tally[0] += int(mine.sum())
                tally[1] += int((ok & mine).sum())
        todo = todo[~ok]
        if len(todo) == 0:
            return y
        if attempt > MAX_REDRAWS:
            break
        state = np.random.SeedSequence([seed, chunk, 2, attempt]).generate_state(2, np.uint32)
        generator = torch.Generator(device=y.device).manual_seed(int(state.view(np.uint64)[0] >> 1))
        with precision_context(precision, y.device):
            again = flow.sample(
                len(todo), None if context is None else context[todo], generator=generator
            )
        y[todo] = again.to(y.dtype)
    raise FloatingPointError(
        f"chunk {chunk}: {len(todo)} events still outside the training events' support after "
        f"{MAX_REDRAWS} redraws; the model puts almost none of its probability inside it, "
        "retrain it"
    )


def acceptance_record(counts: dict[int, list[int]], labelled: bool) -> dict:
    """The support's acceptance per process from ``counts`` {label: [drawn, accepted]}:
    ``{process: {"drawn", "accepted", "acceptance"}}`` (one entry "all" without labels)."""
    from hepflows.preprocess import PROCESSES

    out = {}
    for label, (drawn, accepted) in sorted(counts.items()):
        name = PROCESSES.get(label, str(label)) if labelled else "all"
        out[name] = {"drawn": drawn, "accepted": accepted, "acceptance": accepted / max(drawn, 1)}
    return out


def _record_selection(metadata: dict, preprocessor: Preprocessor, applied: bool) -> None:
    """The ingest selection's terms checked on the events and those skipped (they read
    branches that are not features), into the sample's metadata and the log."""
    support = preprocessor.support or {}
    checked = support.get("selection") if applied else None
    skipped = list(support.get("selection_skipped") or ())
    if checked is None and not skipped:
        return
    metadata["support_selection"] = {"checked": checked, "skipped": skipped}
    if checked is not None:
        log.info("support: every event passes the selection's terms %s", checked)
    if skipped:
        log.info(
            "support: the selection's terms %s read branches that are not features; "
            "generated events are not checked against them",
            skipped,
        )


def _check_finite(n_bad: int, chunk: int) -> None:
    if n_bad:
        raise FloatingPointError(
            f"the flow produced {n_bad} non-finite events in chunk {chunk}; "
            "the model is numerically broken, retrain it"
        )


class _Pending:
    """A chunk on its way to the host: a non-blocking copy into pinned memory (on CUDA), its
    non-finite count with it, and the event that says both have arrived."""

    def __init__(self, y: torch.Tensor, n_bad: torch.Tensor, chunk: int) -> None:
        self.chunk = chunk
        if y.device.type == "cuda":
            self.y = torch.empty(y.shape, dtype=torch.float32, pin_memory=True)
            self.n_bad = torch.empty((), dtype=n_bad.dtype, pin_memory=True)
            self.y.copy_(y, non_blocking=True)
            self.n_bad.copy_(n_bad, non_blocking=True)
            self.event: torch.cuda.Event | None = torch.cuda.Event()
            self.event.record()
        else:
            self.y, self.n_bad, self.event = y.float(), n_bad, None

    def __len__(self) -> int:
        return self.y.shape[0]

    def result(self) -> np.ndarray:
        """Wait for the copy, check it, return the events (n, d) float32."""
        if self.event is not None:
            self.event.synchronize()
        _check_finite(int(self.n_bad), self.chunk)
        return self.y.numpy()


#: A drawn chunk: its events (or their pending copy) and labels.
_Chunk = tuple[np.ndarray | _Pending, np.ndarray | None]


def _to_events(
    preprocessor: Preprocessor, y: np.ndarray, labels: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Preprocessed events (n, d) and labels -> {feature: float32 (n,), "label": int8 (n,)}."""
    x = preprocessor.inverse(y, labels).astype(np.float32)
    events = {name: x[:, i] for i, name in enumerate(preprocessor.features)}
    if labels is not None:
        events[LABEL] = labels
    return events


@torch.no_grad()
def sample_chunk(
    flow: Flows,
    preprocessor: Preprocessor,
    n: int,
    *,
    seed: int,
    chunk: int,
    signal_fraction: float | None,
    device: torch.device,
    precision: str = "float32",
    support: bool = True,
) -> dict[str, np.ndarray]:
    """Generate chunk ``chunk``: ``n`` events as {feature: float32 (n,), "label": int8 (n,)}.

    ``signal_fraction`` is None for an unconditional flow (no label is drawn or written).
    The events are chunk ``chunk`` of :func:`sample_to_root` with the same arguments: with
    ``support``, inside the training events' support and passing the selection.
    """
    device = torch.device(device)
    bounds, cut = _support_checks(preprocessor, device, support)
    y, labels = _draw(
        flow,
        n,
        seed=seed,
        chunk=chunk,
        signal_fraction=signal_fraction,
        device=device,
        precision=precision,
        bounds=bounds,
        cut=cut,
    )
    return _to_events(preprocessor, y, labels)


def _support_checks(
    preprocessor: Preprocessor, device: torch.device, support: bool
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, Cut | None]:
    """The support's latent bounds on ``device`` and the selection's check
    (:mod:`hepflows.support`), each None where absent or without ``support``."""
    from hepflows.support import data_cut, latent_bounds

    if not support:
        return None, None
    box = latent_bounds(preprocessor)
    bounds = (
        None
        if box is None
        else (
            torch.as_tensor(box[0], dtype=torch.float32, device=device),
            torch.as_tensor(box[1], dtype=torch.float32, device=device),
        )
    )
    return bounds, data_cut(preprocessor)


def iter_chunks(n_events: int, chunk_size: int, first_chunk: int = 0) -> Iterator[tuple[int, int]]:
    """(chunk index, events in it) covering ``n_events`` from chunk ``first_chunk`` on."""
    chunk = first_chunk
    remaining = n_events
    while remaining > 0:
        size = min(chunk_size, remaining)
        yield chunk, size
        chunk += 1
        remaining -= size


class _WriterThread:
    """Runs ``consume(item)`` on a background thread, in submission order.

    :meth:`put` blocks while :data:`QUEUE_CHUNKS` items wait, and re-raises (in the caller's
    thread) the first exception ``consume`` raised; :meth:`close` waits for the queue to drain.
    """

    _STOP = object()

    def __init__(self, consume: Callable[[object], None]) -> None:
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hepflows-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            if self._error is None:  # after a failure, drain without working
                try:
                    self._consume(item)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: object) -> None:
        self._raise()
        self._queue.put(item)

    def close(self) -> None:
        """Wait for every queued item; re-raise a failure of the writer."""
        self._queue.put(self._STOP)
        self._thread.join()
        self._raise()

    def abandon(self) -> None:
        """Stop after the items already queued, discarding their work (used on errors)."""
        self._error = self._error or RuntimeError("sampling failed")
        self._queue.put(self._STOP)
        self._thread.join()


def sample_to_root(
    flow: Flows,
    preprocessor: Preprocessor,
    path: str | Path,
    n_events: int,
    *,
    seed: int,
    chunk_size: int = 100_000,
    first_chunk: int = 0,
    signal_fraction: float | None = None,
    compression: str | None = "lz4",
    device: torch.device | str = "cpu",
    metadata: dict | None = None,
    progress: bool = True,
    precision: str = "float32",
    overlap: bool = True,
    fast: bool | None = None,
    support: bool = True,
) -> int:
    """Stream ``n_events`` generated events to the ROOT file ``path``; returns the count.

    The file appears only when complete (see :class:`hepflows.events.writer.EventWriter`).
    ``precision`` is one of :data:`PRECISIONS` (``"auto"``: bf16 conditioners on a capable GPU,
    float32 elsewhere); ``overlap`` writes on a background thread while the next chunk is drawn.
    Either way chunk ``k`` is drawn from ``(seed, k)`` alone and written in order, so the file
    does not depend on ``overlap`` and, for a given device and precision, is reproducible bit for
    bit.  ``fast`` (default: on CUDA) copies chunks asynchronously through pinned memory
    (with ``overlap`` only); the events are the same.  With ``support`` (and a preprocessor that
    holds one) every event lies inside the training events' support: events outside are
    redrawn (:mod:`hepflows.support`), and the acceptance per process goes into the file's
    metadata (``support_acceptance``) and the log.
    """
    from hepflows.events.writer import writing

    device = torch.device(device)
    asynchronous = overlap and (fast_path_default(device) if fast is None else fast)
    precision = resolve_precision(precision, device)
    bounds, cut = _support_checks(preprocessor, device, support)
    counts: dict[int, list[int]] = {}
    for member in as_members(flow):
        member.eval()
    with writing(
        path,
        n_events,
        "sampling",
        compression=compression,
        metadata=metadata,
        progress=progress,
        mininterval=5.0,
    ) as (writer, bar):

        def write(item: object) -> None:
            y, labels = cast(_Chunk, item)
            if isinstance(y, _Pending):
                y = y.result()
            writer.write(_to_events(preprocessor, y, labels))
            bar.update(len(y))

        worker = _WriterThread(write) if overlap else None
        try:
            for chunk, size in iter_chunks(n_events, chunk_size, first_chunk):
                with torch.no_grad():
                    item = _draw(
                        flow,
                        size,
                        seed=seed,
                        chunk=chunk,
                        signal_fraction=signal_fraction,
                        device=device,
                        precision=precision,
                        asynchronous=asynchronous,
                        bounds=bounds,
                        cut=cut,
                        counts=counts,
                    )
                if worker is None:
                    write(item)
                else:
                    worker.put(item)
            if worker is not None:
                worker.close()
            if bounds is not None or cut is not None:
                record = acceptance_record(counts, signal_fraction is not None)
                writer.metadata["support_acceptance"] = record
                _record_selection(writer.metadata, preprocessor, cut is not None)
                log.info(
                    "support: acceptance %s",
                    ", ".join(f"{k} {v['acceptance']:.5f}" for k, v in record.items()),
                )
        except BaseException:
            if worker is not None:
                worker.abandon()
            raise
        return writer.n_written
