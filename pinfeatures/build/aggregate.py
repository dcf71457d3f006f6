"""Aggregate stage: board titles per pin and top queries per pin, in DuckDB (sql/*.sql).

In:  valid saves(pin_id, board_id, ...), boards(board_id, title, ...), engagements(query, pin_id,
     action, [user_id], [country], [locale], ...) as Polars frames (validate.py).
Out: Aggregates: pin_boards(pin_id, boards: list[str]), pin_queries(pin_id, queries: list[str]),
     query_pins (the privacy-passing (query, pin) pairs, see sql/query_pins.sql), query_traffic
     (one row per privacy-passing query, see sql/queries.sql) and stats for the manifest.
     Everything but query_traffic is keyed by pin_id, so a hash-partition of the pins (with their
     saves and engagements) aggregates to the matching slice of a whole-input run; a shard returns
     its per-query parts instead (sql/query_parts.sql) and `combine_queries` adds them up.
     `board_titles` alone gives pin_boards (the whole build runs the language stage beside the
     query steps, which it needs nothing of).
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import duckdb
import polars as pl

from pinfeatures.build.scrub import MAX_PHRASE_CHARS, NORMAL_EXCLUDED_WORD, normal_phrase_pattern, normalize_phrases
from pinfeatures.errors import ConfigError, InputError
from pinfeatures.progress import warn
from pinfeatures.sqlrun import connect, duckdb_arrow, run_sql


@dataclass
class Aggregates:
    pin_boards: pl.DataFrame
    pin_queries: pl.DataFrame
    query_pins: pl.DataFrame
    query_traffic: pl.DataFrame | None
    """None for a shard (`query_parts=True`): see `parts`."""
    stats: dict[str, Any]
    parts: dict[str, pl.DataFrame] | None = None
    """A shard's query_traffic, query_users, query_locales (sql/query_parts.sql), for combine_queries."""
    warnings: list[str] = field(default_factory=list)
    """Already on stderr; the build adds them to the manifest's warnings (and --strict stops on them)."""
    memory: dict[str, Any] | None = None
    """DuckDB's memory limit as it reports it, and whether it spilled (`memory_stats`)."""


QUERY_PARTS = ("query_traffic", "query_users", "query_locales")
QUERY_WORK_VIEWS = ("candidate_events",)
QUERY_WORK_TABLES = ("query_remap", "remap_moves", "scrubbed_empty", "moved_pairs", "query_pairs", "candidate_raw", "pair_users",
                     "candidate_parts", "passing", "country_votes", "part_queries")
"""The query SQL's working views and tables (sql/query_norm.sql, query_pairs.sql, query_parts.sql),
dropped once the per-query parts and the manifest's counts are made."""
WORK_PARQUET: dict[str, Any] = {"compression": "uncompressed", "statistics": False}
"""Intermediate files (a build's work folder) are read once, by the next step: fast to write and
to scan beats small (against lz4, a 2M-row engagements file: write 0.21 s vs 0.26 s, DuckDB scan
0.13 s vs 0.20 s, twice the bytes on disk)."""
STREAMED = ("saves", "engagements")
"""The big input tables: validated one input file at a time (validate_tables' `streamed`), their
valid rows handed to DuckDB as Parquet files (ParquetSink), never whole in memory."""
WORK_FOLDER = "_work"
"""A build's (or shard's) work folder for those files and DuckDB's spill folder: removed after the aggregate stage."""
SPILL_FOLDER = "duckdb-spill"
"""DuckDB's temporary folder, inside the build's staging folder (or a shard's work folder): removed
after the stage, and with the staging or work folder if the build is killed."""


SQL_COLUMNS: dict[str, dict[str, Any]] = {
    "saves": {"pin_id": pl.Utf8, "board_id": pl.Utf8},
    "boards": {"board_id": pl.Utf8, "title": pl.Utf8},
    "engagements": {"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "country": pl.Utf8, "locale": pl.Utf8},
}
"""The columns of each input table the SQL reads."""


def sql_table(name: str, frame: pl.DataFrame) -> pl.DataFrame:
    """Just the columns the SQL reads of table `name`, adding absent optional ones as typed NULLs:
    what `aggregate` registers, or what it reads back from Parquet files given instead of a frame."""
    return frame.select(
        [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in SQL_COLUMNS[name].items()]
    )


class ParquetSink:
    """validate_tables' sink: each file's valid rows of a table, as the SQL reads them
    (`sql_table`), to WORK/<table>/<n>.parquet; `files[table]` lists them for `aggregate`."""

    def __init__(self, work: Path):
        self.work = work
        self.files: dict[str, list[Path]] = {}

    def __call__(self, name: str, rows: pl.DataFrame) -> None:
        files = self.files.setdefault(name, [])
        path = self.work / name / f"{len(files):05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        sql_table(name, rows).write_parquet(path, **WORK_PARQUET)
        files.append(path)


def aggregate(
    saves: pl.DataFrame | Sequence[Path],
    boards: pl.DataFrame,
    engagements: pl.DataFrame | Sequence[Path],
    *,
    action_weights: Mapping[str, float],
    board_top_k: int = 5,
    query_top_k: int = 5,
    query_min_users: int = 3,
    query_top_pins: int = 10,
    require_users: bool = False,
    threads: int | None = None,
    use_users: bool | None = None,
    query_parts: bool = False,
    memory_limit: int | None = None,
    temp_directory: Path | None = None,
    pin_boards: pl.DataFrame | None = None,
) -> Aggregates:
    """Run sql/board_titles.sql (`board_titles`), query_norm.sql (normalised here), query_pairs.sql, query_parts.sql, top_queries.sql, query_pins.sql, queries.sql.

    k counts distinct users (user ids canonical, null ones no user: validate.py). Engagements with
    no user id at all fall back to counting engaged events, with a warning on stderr and in
    `warnings`, or an InputError with `require_users`. `use_users`: a shard gets the whole input's
    answer (so every shard counts alike; the driver warns once); None: decide from these engagements.
    `query_parts`: return the per-query parts (a shard) instead of the queries table.
    saves and engagements are frames, or Parquet files of their `sql_table` rows (then `use_users`
    must be given): DuckDB reads those under its memory limit, and no table needs to be in memory.
    `memory_limit` (bytes) bounds DuckDB, which spills to `temp_directory` (a folder of the
    build's own, removed here); Aggregates.memory says whether it spilled.
    `pin_boards`: the board titles, already worked out by `board_titles` (the whole build does, to
    run the language stage beside the query steps); then saves and boards are not read here.
    """
    warnings: list[str] = []
    if use_users is None:
        assert isinstance(engagements, pl.DataFrame), "engagements given as files need use_users"
        use_users = has_user_ids(engagements)
        if not use_users and engagements.height:
            warnings.append(no_user_ids(query_min_users, require_users))
    boards_spilled = False
    if pin_boards is None:
        pin_boards, boards_memory = board_titles(saves, boards, top_k=board_top_k, threads=threads, memory_limit=memory_limit, temp_directory=temp_directory)
        boards_spilled = boards_memory["spilled"]
    with _bounded_connection(threads, memory_limit, temp_directory) as con:
        _register_input(con, "engagements", engagements)
        weights = pl.DataFrame({"action": list(action_weights), "weight": [float(w) for w in action_weights.values()]})
        con.register("action_weights", weights.to_arrow())

        _register_query_norm(con)
        run_sql(con, "query_pairs", {"min_users": query_min_users, "use_users": use_users, "all_queries": query_parts})
        run_sql(con, "query_parts", {"all_queries": query_parts})
        stats_row = run_sql(con, "query_stats").fetchall()[0]
        # what is left reads only the passing pairs and the per-query parts: the groups of every
        # event go, so the ordered lists and distinct counts after have DuckDB's memory to themselves
        for name in QUERY_WORK_VIEWS:
            con.execute(f"DROP VIEW {name}")
        for name in QUERY_WORK_TABLES:
            con.execute(f"DROP TABLE {name}")
        pin_queries = run_sql(con, "top_queries", {"top_k": query_top_k}).pl()
        query_pins = run_sql(con, "query_pins", {"use_users": use_users}).pl()
        parts = query_traffic = None
        if query_parts:
            parts = {name: con.sql(f"SELECT * FROM {name}").pl() for name in QUERY_PARTS}
        else:
            con.execute("CREATE TEMP VIEW kept_pairs AS SELECT query, pin_id, score FROM passing_pairs")
            query_traffic = _query_rows(con, use_users, query_top_pins)
        memory = memory_stats(con, temp_directory)
        memory["spilled"] = memory["spilled"] or boards_spilled
    stats = {
        "query_min_users": query_min_users,
        "threshold_unit": "users" if use_users else "events",
        "events_query_scrubbed_empty": int(stats_row[0]),
        "query_pin_pairs": int(stats_row[1]),
        "query_pin_pairs_kept": int(stats_row[2]),
        "impression_only_pairs": int(stats_row[3]),
    }
    if not use_users:
        stats["note"] = "engagements have no user_id: the threshold counts engaged events, not distinct users"
    return Aggregates(
        pin_boards=pin_boards,
        pin_queries=pin_queries.with_columns(pl.col("queries").cast(pl.List(pl.Utf8))),
        query_pins=query_pins,
        query_traffic=query_traffic,
        stats=stats,
        parts=parts,
        warnings=warnings,
        memory=memory,
    )


def board_titles(saves: pl.DataFrame | Sequence[Path], boards: pl.DataFrame, *, top_k: int = 5, threads: int | None = None,
                 memory_limit: int | None = None, temp_directory: Path | None = None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """(pin_boards(pin_id, boards: list[str]), `memory_stats`): sql/board_titles.sql over the valid
    saves (a frame, or Parquet files of their `sql_table` rows) and boards, on a bounded
    connection of its own."""
    with _bounded_connection(threads, memory_limit, temp_directory) as con:
        _register_input(con, "saves", saves)
        _register_input(con, "boards", boards)
        # each distinct raw title normalised in one vectorised call: the SQL UDF did it one
        # string per call (0.7 s for 1,124 titles)
        raw_titles = sql_table("boards", boards).select(pl.col("title").drop_nulls().unique().alias("raw_title"))
        con.register("title_norm", duckdb_arrow(raw_titles.with_columns(normalize_phrases(raw_titles.get_column("raw_title")).alias("title"))))
        pin_boards = run_sql(con, "board_titles", {"top_k": top_k}).pl()
        memory = memory_stats(con, temp_directory)
    return pin_boards.with_columns(pl.col("boards").cast(pl.List(pl.Utf8))), memory


def _register_input(con: Any, name: str, table: pl.DataFrame | Sequence[Path]) -> None:
    """Input table `name` for the SQL: a frame's `sql_table` columns, or a view over Parquet files of them."""
    if isinstance(table, pl.DataFrame):
        con.register(name, duckdb_arrow(sql_table(name, table)))
    else:
        con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({_sql_list([str(p) for p in table])})")


def _register_query_norm(con: Any) -> None:
    """raw_pairs and query_remap(raw_query, query) for query_pairs.sql: sql/query_norm.sql's raw
    queries that `normal_phrases` cannot vouch for, normalised in one call, and kept where their
    normal form differs ('' when scrubbing left nothing)."""
    rule = {"normal_pattern": normal_phrase_pattern(), "normal_max_chars": MAX_PHRASE_CHARS, "normal_excluded_word": NORMAL_EXCLUDED_WORD}
    raw = run_sql(con, "query_norm", rule).pl()
    remap = raw.with_columns(normalize_phrases(raw.get_column("raw_query")).alias("query")).filter(pl.col("query") != pl.col("raw_query"))
    con.register("query_remap_frame", duckdb_arrow(remap))
    # a table of DuckDB's own (under its memory limit, spillable): the frame is freed at once
    con.execute("CREATE OR REPLACE TEMP TABLE query_remap AS SELECT * FROM query_remap_frame")
    con.unregister("query_remap_frame")


def memory_stats(con: Any, temp_directory: Path | None) -> dict[str, Any]:
    """DuckDB's memory_limit read back from the connection, and whether it spilled: DuckDB makes
    its temp_directory only when it first writes there (and removes it on close)."""
    limit = con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
    return {"duckdb_memory_limit": limit, "spilled": temp_directory is not None and Path(temp_directory).is_dir()}


@contextmanager
def _bounded_connection(threads: int | None, memory_limit: int | None, temp_directory: Path | None) -> Iterator[Any]:
    """A DuckDB connection under `memory_limit`, spilling to `temp_directory`: DuckDB running out
    of memory becomes `out_of_memory`'s one-line error; the connection is closed and the spill
    folder removed however the block ends."""
    con = connect(threads=threads, memory_limit=memory_limit, temp_directory=temp_directory)
    try:
        yield con
    except duckdb.OutOfMemoryException as exc:
        raise out_of_memory(exc) from None
    finally:
        con.close()
        if temp_directory is not None:
            shutil.rmtree(temp_directory, ignore_errors=True)


def out_of_memory(exc: Exception) -> ConfigError:
    """DuckDB could not fit what it cannot spill (a hash table's directory, a list aggregate) under
    memory_limit: a one-line error that says what to change."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ConfigError(f"the aggregate stage needs more memory than memory_limit gives DuckDB ({first}): raise --memory-limit")


def _query_rows(con: Any, use_users: bool, top_pins: int) -> pl.DataFrame:
    """sql/queries.sql over the registered query parts and kept_pairs."""
    rows = run_sql(con, "queries", {"use_users": use_users, "top_pins": top_pins}).pl()
    return rows.with_columns(pl.col("top_pins").cast(pl.List(pl.Utf8)))


def combine_queries(parts: Mapping[str, list[str]], kept_pairs: list[str], *, use_users: bool, top_pins: int, threads: int | None = None,
                    memory_limit: int | None = None, temp_directory: Path | None = None) -> pl.DataFrame:
    """The queries table of a sharded build: sql/queries.sql over every shard's parts at once.

    In:  parts: {query_traffic|query_users|query_locales: Parquet files, one per shard};
         kept_pairs: Parquet files holding every shard's query_pins (query, pin_id, score).
    Out: what `aggregate` returns as query_traffic for the whole input.
    """
    with _bounded_connection(threads, memory_limit, temp_directory) as con:
        for name in QUERY_PARTS:
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet({_sql_list(parts[name])})")
        con.execute(f"CREATE TEMP VIEW kept_pairs AS SELECT query, pin_id, score FROM read_parquet({_sql_list(kept_pairs)})")
        return _query_rows(con, use_users, top_pins)


def _sql_list(paths: list[str]) -> str:
    """A DuckDB list literal of file paths (a view cannot hold a prepared parameter)."""
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


def no_user_ids(query_min_users: int, require_users: bool) -> str:
    """Engagements without any user id: a warning on stderr (returned, for the manifest), or an
    InputError with `require_users`."""
    message = (
        "engagements have no user_id (the column is missing or every value is null or blank): "
        f"the privacy threshold k={query_min_users} counts engaged events, not distinct users"
    )
    if require_users:
        raise InputError(message + " (require_users is set)", column="user_id")
    message += "; --require-users makes this an error"
    warn(message)
    return message


def has_user_ids(engagements: pl.DataFrame) -> bool:
    """Whether the privacy threshold can count distinct users: some engagement has a user_id."""
    return "user_id" in engagements.columns and engagements.get_column("user_id").null_count() < engagements.height
