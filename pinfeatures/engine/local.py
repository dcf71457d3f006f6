"""The local engine: shard tasks in this process (one worker) or in a pool of spawned processes.

Spawned, not forked: the parent holds DuckDB and Polars thread pools, which a fork would copy in
an unknown state. Each worker gets cores / workers threads for Polars and DuckDB, so N workers
do not start N x cores threads on a small machine.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence


def worker_threads(workers: int) -> int:
    """Threads each of `workers` processes may use."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int) -> None:
    os.environ["PINFEATURES_WORKER_THREADS"] = str(threads)


class LocalEngine:
    def __init__(self, workers: int | None = None):
        self.workers = workers

    def concurrency(self, n_tasks: int) -> int:
        return max(1, min(self.workers or os.cpu_count() or 1, n_tasks))

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, memory_bytes: int | None = None) -> list[Any]:
        workers = self.concurrency(len(tasks))
        if workers <= 1:
            return [fn(t) for t in tasks]
        threads = worker_threads(workers)
        # POLARS_MAX_THREADS is read when a worker imports Polars: set it for the children only
        saved = os.environ.get("POLARS_MAX_THREADS")
        os.environ["POLARS_MAX_THREADS"] = str(threads)
        try:
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker, initargs=(threads,)) as pool:
                return list(pool.map(fn, tasks))
        finally:
            if saved is None:
                os.environ.pop("POLARS_MAX_THREADS", None)
            else:
                os.environ["POLARS_MAX_THREADS"] = saved

    def close(self) -> None:
        pass
