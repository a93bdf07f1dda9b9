"""Reading ahead: :func:`prefetch` runs an iterator in a background thread, a bounded queue
between it and its consumer.

Parsing a CSV (pyarrow) and decompressing ROOT baskets (uproot) release the GIL, so a reader
thread keeps them busy while the caller routes the previous chunk and a writer thread
compresses it: reading, routing and writing overlap.  Memory stays bounded: at most ``depth``
items wait in the queue, plus the one the reader is making.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar, cast

__all__ = ["prefetch"]

T = TypeVar("T")

# Seconds the reader waits on a full queue before looking whether the consumer has gone.
_POLL_S = 0.1


class _Failure:
    """The exception the reader's iterator raised, carried through the queue in its place."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


def prefetch(
    items: Iterable[T], depth: int = 2, *, name: str = "hepflows-read"
) -> Generator[T, None, None]:
    """Yield the items of ``items``, in order, computed up to ``depth`` ahead in a thread.

    An exception of ``items`` is re-raised here at its place in the sequence (the items before
    it are yielded first).  Closing this generator early (``break``, an error of the consumer,
    ``close()``) stops the reader and waits for it, so whatever ``items`` reads from (an open
    file) may be closed right after.
    """
    if depth < 1:
        raise ValueError(f"prefetch: depth must be >= 1, got {depth}")
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=read, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield cast(T, item)
    finally:
        stop.set()
        thread.join()
