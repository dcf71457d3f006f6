"""Work side by side on threads: chunks of a long column (`map_chunks`), and the items of a
stream taken in order one ahead (`ordered_map`).

Polars runs one string kernel (a regex count, a replace, NFKC) on one thread, and releases the
GIL while it runs (as does Arrow's file reading): a function made of such kernels, applied in a
few Python threads, keeps every core busy. `map_chunks` is only for functions whose answer for a
value depends on that value alone, so the chunks' answers, put back together, are the whole
column's.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator

import polars as pl

MIN_CHUNK = 100_000
"""Values per chunk below which a column is done in one go: threads would cost more than they give."""


def map_chunks(values: pl.Series, fn: Callable[[pl.Series], pl.Series], min_chunk: int = MIN_CHUNK) -> pl.Series:
    """`fn(values)`, computed as fn over one chunk per Polars thread (each at least `min_chunk`
    values), concatenated in order under the name `fn` gives the first chunk."""
    chunks = min(pl.thread_pool_size(), values.len() // max(min_chunk, 1))
    if chunks <= 1:
        return fn(values)
    size = -(-values.len() // chunks)
    with ThreadPoolExecutor(chunks) as pool:
        parts = list(pool.map(lambda start: fn(values.slice(start, size)), range(0, values.len(), size)))
    return pl.concat(parts)


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], threads: int = 1) -> Iterator[Any]:
    """fn(item) for each item, yielded in the items' order, computed on `threads` threads one item
    ahead: the next item is handed to a thread before a result is yielded, so it is worked on
    while the caller uses the result. At most two items are in flight (the caller's memory is a
    few items, not the stream); with two threads, both run while the caller takes a result.
    """
    with ThreadPoolExecutor(max(1, threads)) as pool:
        pending: deque[Future[Any]] = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
