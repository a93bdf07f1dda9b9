"""Independent tasks in a small pool of processes, each on one thread.

The validation's costly parts are many independent calls of one function: the metrics of each
MC-vs-MC null pair, the classifier judges' fits, the figures.  :func:`task_pool` runs a list
of such calls on ``workers`` processes (joblib's loky: started afresh, not forked, so no copy
of a parent's threads, and no re-run of a script that lacks an ``if __name__ == "__main__"``
guard) and returns their results in the order of the list.  Each call is seeded by its own arguments and
runs on one BLAS/OpenMP thread, so the results do not depend on the number of workers; the
warnings of the calls are shown by the caller, through its filters.  With
one worker the calls run in this process, one after the other, also on one thread.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from joblib import Parallel, delayed
from threadpoolctl import threadpool_limits

#: One call: (function, positional arguments, keyword arguments); the function must be a
#: module-level one (it is pickled by name).
Task = tuple[Callable[..., Any], tuple[Any, ...], Mapping[str, Any]]
Runner = Callable[[Sequence[Task]], list[Any]]
#: Default number of workers at most: the validation's tasks are small, and more processes
#: mostly cost memory and start-up (each imports matplotlib and sklearn, about 1.5 s).
MAX_DEFAULT_WORKERS = 2


def default_workers(limit: int = MAX_DEFAULT_WORKERS) -> int:
    """The CPUs this process may run on, at most ``limit``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(limit, cpus))


#: The registry of :func:`_rewarn`'s warnings (the ``default`` filter action shows each once,
#: until a filter changes).
_SHOWN: dict[Any, Any] = {}


def _one_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, list[tuple[str, type[Warning], str, int]]]:
    """``fn(*args, **kwargs)`` on one thread, and the warnings it raised, for the caller."""
    # two workers of two OpenMP threads each would fight over two cores
    with threadpool_limits(limits=1), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [(str(w.message), w.category, w.filename, w.lineno) for w in caught]


def _rewarn(caught: list[tuple[str, type[Warning], str, int]]) -> None:
    # through the caller's filters (pytest's, the command's), as if raised here
    for text, category, filename, lineno in caught:
        warnings.warn_explicit(text, category, filename, lineno, registry=_SHOWN)


def run_here(tasks: Sequence[Task]) -> list[Any]:
    """Run ``tasks`` in this process, one after the other, on one thread; their results in
    order."""
    # one thread as in a worker: the same numbers, and no OpenMP threads spinning on a busy
    # machine (the judges' fits ran several times slower with them under load)
    with threadpool_limits(limits=1):
        return [fn(*args, **kwargs) for fn, args, kwargs in tasks]


@contextlib.contextmanager
def task_pool(workers: int) -> Iterator[Runner]:
    """A function that runs a list of :data:`Task` and returns their results in order.

    joblib's loky processes start on the first list and serve every list run inside the
    block (and are kept for the next block); a task's exception is raised here, as itself.
    """
    if workers <= 1:
        yield run_here
        return
    with Parallel(n_jobs=workers, backend="loky") as parallel:

        def run(tasks: Sequence[Task]) -> list[Any]:
            done = parallel(delayed(_one_thread)(fn, args, kwargs) for fn, args, kwargs in tasks)
            for _, caught in done:
                _rewarn(caught)
            return [result for result, _ in done]

        yield run
