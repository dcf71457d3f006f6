"""pinfeatures.chunks: a column function over chunks on Polars' threads gives the whole column's answer."""

from __future__ import annotations

import threading

import polars as pl

from pinfeatures.chunks import map_chunks


def test_chunks_put_back_in_order_equal_the_whole_column():
    values = pl.Series("v", [f"  Word {i} " if i % 3 else None for i in range(1003)], dtype=pl.Utf8)
    seen: list[int] = []

    def fn(chunk: pl.Series) -> pl.Series:
        seen.append(chunk.len())
        return chunk.str.strip_chars().str.to_uppercase()

    got = map_chunks(values, fn, min_chunk=100)
    assert got.to_list() == values.str.strip_chars().str.to_uppercase().to_list()
    assert got.name == "v"
    # one chunk per Polars thread (at most len // min_chunk of them), cut by ceil division
    chunks = min(pl.thread_pool_size(), 10)
    size = -(-1003 // chunks)
    expected = [1003] if chunks == 1 else [size] * (chunks - 1) + [1003 - size * (chunks - 1)]
    assert sorted(seen) == sorted(expected)

def test_short_column_is_one_call_in_this_thread():
    threads: list[str] = []

    def fn(chunk: pl.Series) -> pl.Series:
        threads.append(threading.current_thread().name)
        return chunk

    values = pl.Series([1, 2, 3])
    assert map_chunks(values, fn, min_chunk=100).to_list() == [1, 2, 3]
    assert threads == [threading.current_thread().name]
    assert map_chunks(pl.Series([], dtype=pl.Int64), fn).len() == 0
