"""DuckDB plumbing: find the SQL files, open an in-process connection, run a file.

The SQL lives in `sql/*.sql` (a top-level folder in a checkout, `pinfeatures/sql/` in the wheel).
Connections never download extensions: only what the wheel ships (core, parquet, json, icu).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import duckdb
import polars as pl
import pyarrow as pa


@lru_cache(maxsize=1)
def sql_dir() -> Path:
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"sql/ folder not found next to {here}")


@lru_cache(maxsize=None)
def load_sql(name: str) -> str:
    """The text of sql/<name>.sql."""
    return (sql_dir() / f"{name}.sql").read_text(encoding="utf-8")


def connect(threads: int | None = None, memory_limit: int | None = None, temp_directory: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection (text is normalised in Python before it reaches the SQL:
    pinfeatures.build.scrub.normalize_phrases, one vectorised call per column).

    `memory_limit` (bytes): what DuckDB may hold before it spills to `temp_directory` (DuckDB's
    default is 80% of the machine's memory, so it would grow rather than spill).
    """
    # no downloads, and no progress bar of DuckDB's own: our stages report progress (and --quiet means quiet)
    config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    if threads:
        config["threads"] = threads
    if memory_limit:
        config["memory_limit"] = f"{int(memory_limit)}B"
    if temp_directory is not None:
        config["temp_directory"] = str(temp_directory)
    con = duckdb.connect(":memory:", config=config)
    # Insertion order is not part of any output (every SQL file orders what it returns);
    # dropping it lets DuckDB stream large aggregations with less memory.
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def duckdb_arrow(frame: pl.DataFrame) -> pa.Table:
    """A frame as Arrow for DuckDB to scan, without copying its strings: Polars keeps them as
    string views, which DuckDB reads as they are; the default (large_string) would copy every
    string once more."""
    return frame.to_arrow(compat_level=pl.CompatLevel.newest())


def run_sql(con: duckdb.DuckDBPyConnection, name: str, params: Mapping[str, Any] | None = None) -> "duckdb.DuckDBPyRelation | None":
    """Run sql/<name>.sql with named parameters ($name); a SELECT returns a relation (`.pl()`, `.fetchone()`)."""
    result = None
    for statement in _statements(load_sql(name)):
        used = {k: v for k, v in (params or {}).items() if f"${k}" in statement}
        result = con.sql(statement, params=used) if used else con.sql(statement)
    return result


@lru_cache(maxsize=None)
def _statements(text: str) -> tuple[str, ...]:
    """A file's statements, one at a time, without their whole-line comments (so a `$name` or a
    `;` in a comment is neither a parameter nor the end of a statement): DuckDB takes prepared
    parameters only in the last statement of a script. Statements end with `;` at the end of a
    line (our SQL files keep to it)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    chunks = [chunk.strip() for chunk in code.split(";\n")]
    return tuple(c for c in chunks if c)
