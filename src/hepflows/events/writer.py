"""Writing ROOT event files: :class:`EventWriter` streams chunks into one file that appears
only when complete.

An event file holds one TTree ``events`` with one float32 branch per feature (named as in
:mod:`hepflows.events.schema`), an int8 ``label`` (1 signal, 0 background) and, optionally, a
float32 ``weight``.  A JSON dictionary of metadata may sit beside the tree as a ``TObjString``
under the key :data:`METADATA_KEY`.

Every file is written atomically (:class:`hepflows.atomic.AtomicFile`): into a temporary file in
the target's directory, renamed into place only when complete, with the umask's mode, and removed
on any error, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import uproot

from hepflows.atomic import AtomicFile, resource_error
from hepflows.errors import InputError
from hepflows.events.checks import check_labels
from hepflows.events.checks import path_text as _where
from hepflows.events.schema import HIGGS_FEATURES, LABEL, TREE_NAME, WEIGHT

__all__ = ["COMPRESSIONS", "METADATA_KEY", "EventWriter", "all_or_nothing", "write_events"]

#: Key of the JSON metadata string in event files.
METADATA_KEY = "hepflows_metadata"

#: Compression algorithms and the levels used for them (ROOT's usual choices).
COMPRESSIONS: dict[str, tuple[type, int]] = {
    "zlib": (uproot.ZLIB, 1),
    "lz4": (uproot.LZ4, 4),
    "zstd": (uproot.ZSTD, 5),
    "lzma": (uproot.LZMA, 4),
}


_FEATURE_DTYPE = np.dtype(np.float32)
#: A branch name: what a config may name a feature (no brackets, dots or spaces for ROOT).
_BRANCH_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BRANCH_DTYPES: dict[str, np.dtype[Any]] = {LABEL: np.dtype(np.int8), WEIGHT: np.dtype(np.float32)}


def _compression(name: str | None) -> Any:
    """The uproot compression object for a name in :data:`COMPRESSIONS`, or None."""
    if name is None:
        return None
    if not isinstance(name, str) or name.lower() not in COMPRESSIONS:
        raise InputError(f"compression {name!r}: expected one of {sorted(COMPRESSIONS)} or None")
    cls, level = COMPRESSIONS[name.lower()]
    return cls(level)


def _prepare(arrays: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """Validate a chunk of events and cast it to the file's branch types.

    Features (every name but ``label`` and ``weight``: the HIGGS names or the user's) become
    float32, ``label`` int8 (0/1 only), ``weight`` float32; branches come in the order given,
    the HIGGS features in schema order, ``label`` and ``weight`` last.  Raises InputError for
    names that are not branch names, non-numeric or non-1-D arrays, unequal lengths and bad
    labels.
    """
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError(f"{where}: expected a non-empty mapping of branch name -> array")
    bad = [k for k in arrays if not isinstance(k, str) or not _BRANCH_NAME.match(k)]
    if bad:
        raise InputError(
            f"{where}: branch name(s) {bad} are not names (letters, digits and _, not starting "
            f"with a digit); expected features, {LABEL!r} or {WEIGHT!r}"
        )
    features = [f for f in HIGGS_FEATURES if f in arrays] + [
        k for k in arrays if k not in HIGGS_FEATURES and k not in (LABEL, WEIGHT)
    ]
    known = (*features, LABEL, WEIGHT)
    out: dict[str, np.ndarray] = {}
    lengths: dict[str, int] = {}
    for name in (k for k in known if k in arrays):
        a = np.asarray(arrays[name])
        if a.dtype.kind not in "biuf":
            raise InputError(f"{where}: branch {name!r} has non-numeric dtype {a.dtype}")
        if a.ndim != 1:
            raise InputError(f"{where}: branch {name!r} must be 1-D, got shape {a.shape}")
        if name == LABEL:
            check_labels(a, f"{where}: branch {name!r}")
        out[name] = a.astype(_BRANCH_DTYPES.get(name, _FEATURE_DTYPE), copy=False)
        lengths[name] = a.shape[0]
    if len(set(lengths.values())) > 1:
        raise InputError(f"{where}: branches have different lengths {lengths}")
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _metadata_json(metadata: Mapping[str, object], where: str) -> str:
    try:
        return json.dumps(dict(metadata), default=_json_default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: metadata cannot be stored as JSON: {exc}") from exc


class EventWriter:
    """Stream chunks of events into one ROOT file, which appears only when complete.

    >>> with EventWriter("out.root", metadata={"seed": 1}) as w:   # doctest: +SKIP
    ...     for chunk in chunks:
    ...         w.write(chunk)

    The first :meth:`write` fixes the branches (``mktree``); every chunk is appended with
    ``extend`` (one basket per branch per chunk, so chunks of 1e4-1e6 events suit ROOT
    readers best).  On a clean exit the temporary file is renamed to ``path``; on an exception
    it is deleted and the exception propagates.  :attr:`metadata` may be updated until then:
    it is stored as JSON under :data:`METADATA_KEY` when the file is closed.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        compression: str | None = "lz4",
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        self.path = Path(path)
        self.compression = compression
        self._uproot_compression = _compression(compression)
        self.metadata: dict[str, object] = dict(metadata or {})
        _metadata_json(self.metadata, _where(self.path))  # fail early, before any work
        self.n_written = 0
        self._tmp: AtomicFile | None = None
        self._file: Any = None
        self._tree: Any = None
        self._branches: tuple[str, ...] | None = None

    # -- context manager ---------------------------------------------------------------------
    def __enter__(self) -> EventWriter:
        self._open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            try:
                self._finish()
                self._publish()
            except BaseException as err:
                self._discard()
                if (resource := resource_error(err, self.path)) is not None:
                    raise resource from None
                raise
        else:
            self._discard()
            if exc is not None and (resource := resource_error(exc, self.path)) is not None:
                raise resource from None

    # -- the three steps of a write, separate so that several files can be committed together
    def _open(self) -> None:
        if self._file is not None:
            raise RuntimeError(f"{self.path}: EventWriter is already open")
        self._tmp = AtomicFile(self.path)
        try:
            self._file = uproot.recreate(self._tmp.tmp, compression=self._uproot_compression)
        except BaseException as err:
            self._discard()
            if (resource := resource_error(err, self.path)) is not None:
                raise resource from None
            raise

    def _finish(self) -> None:
        """Store the metadata and close the temporary file."""
        if self._file is None:
            return
        if self.metadata:
            self._file[METADATA_KEY] = _metadata_json(self.metadata, _where(self.path))
        self._file.close()
        self._file = None

    def _publish(self) -> None:
        """Rename the finished temporary file to its final name."""
        if self._tmp is not None:
            self._tmp.publish()
            self._tmp = None

    def _discard(self) -> None:
        """Close and delete the temporary file (errors while closing are secondary)."""
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.discard()
            self._tmp = None

    # -- data ----------------------------------------------------------------------------------
    @property
    def branches(self) -> tuple[str, ...] | None:
        """Branch names fixed by the first chunk (None before it)."""
        return self._branches

    def write(self, arrays: Mapping[str, Any]) -> int:
        """Append a chunk: name -> 1-D array, all of one length.  Returns the chunk's length.

        Names are features of the schema, ``label`` and ``weight``; every chunk must have the
        branches of the first.  A chunk of length 0 only creates the tree.
        """
        if self._file is None:
            raise RuntimeError(f"{self.path}: use EventWriter in a 'with' block to write")
        where = _where(self.path)
        chunk = _prepare(arrays, where)
        names = tuple(chunk)
        if self._branches is None:
            self._tree = self._file.mktree(TREE_NAME, {k: v.dtype for k, v in chunk.items()})
            self._branches = names
        elif names != self._branches:
            raise InputError(
                f"{where}: the chunk after event {self.n_written} has branches {list(names)}, "
                f"but the file was started with {list(self._branches)}"
            )
        n = len(next(iter(chunk.values())))
        if n:
            self._tree.extend(chunk)
            self.n_written += n
        return n


def write_events(
    path: str | Path,
    arrays: Mapping[str, Any],
    *,
    compression: str | None = "zlib",
    metadata: Mapping[str, object] | None = None,
) -> None:
    """Write events (name -> 1-D array) to the ROOT file ``path`` atomically.

    Features are stored as float32, ``label`` as int8, ``weight`` as float32; ``compression``
    is one of :data:`COMPRESSIONS` or None; ``metadata`` is stored as JSON.
    """
    with EventWriter(path, compression=compression, metadata=metadata) as writer:
        writer.write(arrays)


@contextlib.contextmanager
def all_or_nothing(writers: Sequence[EventWriter]) -> Iterator[Sequence[EventWriter]]:
    """Open several writers; publish all of them or none.

    On an error every temporary file is deleted (and any output already renamed into place by
    this call is removed again), so a multi-file conversion never leaves part of its outputs.
    """
    published: list[EventWriter] = []
    try:
        for w in writers:
            w._open()
        yield writers
        for w in writers:
            w._finish()
        for w in writers:
            w._publish()
            published.append(w)
    except BaseException as err:
        for w in writers:
            w._discard()
        for w in published:
            w.path.unlink(missing_ok=True)
        if (resource := resource_error(err, *(w.path for w in writers))) is not None:
            raise resource from None
        raise


@contextlib.contextmanager
def writing(
    path: str | Path,
    n_events: int,
    desc: str,
    *,
    compression: str | None = "lz4",
    metadata: Mapping[str, object] | None = None,
    progress: bool = True,
    mininterval: float = 2.0,
) -> Iterator[tuple[EventWriter, Any]]:
    """An :class:`EventWriter` for ``path`` and a progress bar of ``n_events`` events named
    ``desc`` (hidden without ``progress``; redrawn at most every ``mininterval`` s), together:
    the way the generator and the sampler stream their events."""
    from tqdm.auto import tqdm

    with (
        EventWriter(path, compression=compression, metadata=metadata) as writer,
        tqdm(
            total=n_events,
            unit="event",
            unit_scale=True,
            desc=desc,
            disable=not progress,
            mininterval=mininterval,
        ) as bar,
    ):
        yield writer, bar
