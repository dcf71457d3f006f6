"""Column functions over chunks of a long column, side by side on Polars' threads.

Polars runs one string kernel (a regex count, a replace, NFKC) on one thread, and releases the
GIL while it runs: a function made of such kernels, applied to the chunks of a column in a few
Python threads, keeps every core busy. Only for functions whose answer for a value depends on
that value alone, so the chunks' answers, put back together, are the whole column's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable

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
