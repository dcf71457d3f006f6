"""Aggregate stage: board titles per pin and top queries per pin, in DuckDB (sql/*.sql).

In:  valid saves(pin_id, board_id, ...), boards(board_id, title, ...), engagements(query, pin_id,
     action, [user_id], [country], [locale], ...) as Polars frames (validate.py).
Out: Aggregates: pin_boards(pin_id, boards: list[str]), pin_queries(pin_id, queries: list[str]),
     query_pins (the privacy-passing (query, pin) pairs, see sql/query_pins.sql), query_traffic
     (one row per privacy-passing query, see sql/queries.sql) and stats for the manifest. Everything is keyed by pin_id, so a hash-partition of the pins (with their saves and
     engagements) aggregates to the matching slice of a whole-input run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import polars as pl

from pinfeatures.errors import InputError
from pinfeatures.progress import warn
from pinfeatures.sqlrun import connect, run_sql


@dataclass
class Aggregates:
    pin_boards: pl.DataFrame
    pin_queries: pl.DataFrame
    query_pins: pl.DataFrame
    query_traffic: pl.DataFrame
    stats: dict[str, Any]


def _as_table(frame: pl.DataFrame, columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Keep just the columns the SQL reads, adding absent optional ones as typed NULLs."""
    return frame.select(
        [pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in columns.items()]
    )


def aggregate(
    saves: pl.DataFrame,
    boards: pl.DataFrame,
    engagements: pl.DataFrame,
    *,
    action_weights: Mapping[str, float],
    board_top_k: int = 5,
    query_top_k: int = 5,
    query_min_users: int = 3,
    query_top_pins: int = 10,
    require_users: bool = False,
    threads: int | None = None,
) -> Aggregates:
    """Run sql/board_titles.sql, query_norm.sql, query_pairs.sql, top_queries.sql, query_pins.sql, queries.sql.

    k counts distinct users (user ids canonical, null ones no user: validate.py). Engagements with
    no user id at all fall back to counting engaged events, with a warning on stderr, or an
    InputError with `require_users`.
    """
    use_users = "user_id" in engagements.columns and engagements.get_column("user_id").null_count() < engagements.height
    if not use_users and engagements.height:
        message = (
            "engagements have no user_id (the column is missing or every value is null or blank): "
            f"the privacy threshold k={query_min_users} counts engaged events, not distinct users"
        )
        if require_users:
            raise InputError(message + " (require_users is set)", column="user_id")
        warn(message + "; --require-users makes this an error")
    con = connect(threads=threads)
    try:
        con.register("saves", _as_table(saves, {"pin_id": pl.Utf8, "board_id": pl.Utf8}).to_arrow())
        con.register("boards", _as_table(boards, {"board_id": pl.Utf8, "title": pl.Utf8}).to_arrow())
        con.register(
            "engagements",
            _as_table(engagements, {"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "country": pl.Utf8, "locale": pl.Utf8}).to_arrow(),
        )
        weights = pl.DataFrame({"action": list(action_weights), "weight": [float(w) for w in action_weights.values()]})
        con.register("action_weights", weights.to_arrow())

        pin_boards = run_sql(con, "board_titles", {"top_k": board_top_k}).pl()
        run_sql(con, "query_norm")
        run_sql(con, "query_pairs", {"min_users": query_min_users, "use_users": use_users})
        pin_queries = run_sql(con, "top_queries", {"top_k": query_top_k}).pl()
        query_pins = run_sql(con, "query_pins", {"use_users": use_users}).pl()
        query_traffic = run_sql(con, "queries", {"use_users": use_users, "top_pins": query_top_pins}).pl()
        stats_row = run_sql(con, "query_stats").fetchall()[0]
    finally:
        con.close()
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
        pin_boards=pin_boards.with_columns(pl.col("boards").cast(pl.List(pl.Utf8))),
        pin_queries=pin_queries.with_columns(pl.col("queries").cast(pl.List(pl.Utf8))),
        query_pins=query_pins,
        query_traffic=query_traffic.with_columns(pl.col("top_pins").cast(pl.List(pl.Utf8))),
        stats=stats,
    )
