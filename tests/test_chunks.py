"""pinfeatures.chunks: a column function over chunks gives the whole column's answer; ordered_map keeps order and one item ahead."""

from __future__ import annotations

import threading

import polars as pl

import pytest

from pinfeatures.chunks import map_chunks, ordered_map


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


@pytest.mark.parametrize("threads", [1, 2])
def test_ordered_map_keeps_order_and_works_one_item_ahead(threads):
    pulled: list[int] = []

    def items():
        for i in range(6):
            pulled.append(i)
            yield i

    seen: list[tuple[int, int]] = []  # (result, items pulled from the stream when it reached the caller)
    for result in ordered_map(lambda i: i * 10, items(), threads=threads):
        seen.append((result, len(pulled)))
    assert [r for r, _ in seen] == [0, 10, 20, 30, 40, 50]
    # the next item is handed over before a result is: at most two pulled beyond what the caller got
    assert [n for _, n in seen] == [2, 3, 4, 5, 6, 6]
    assert list(ordered_map(str, [], threads=threads)) == []


def test_ordered_map_raises_the_item_error_in_order():
    def fn(i: int) -> int:
        if i == 2:
            raise ValueError("item 2")
        return i

    got: list[int] = []
    with pytest.raises(ValueError, match="item 2"):
        for r in ordered_map(fn, range(5), threads=2):
            got.append(r)
    assert got == [0, 1]
