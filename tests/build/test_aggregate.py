"""The SQL files (sql/*.sql via aggregate.aggregate, real DuckDB) on small hand-made tables."""

from __future__ import annotations

import polars as pl
import pytest

from pinfeatures.build.aggregate import aggregate
from pinfeatures.build.settings import BuildSettings
from pinfeatures.sqlrun import connect, load_sql, run_sql

WEIGHTS = dict(BuildSettings().action_weights)  # impression 0, closeup .5, click 1, long_click 2, save 3
NO_SAVES = pl.DataFrame(schema={"pin_id": pl.Utf8, "board_id": pl.Utf8})
NO_BOARDS = pl.DataFrame(schema={"board_id": pl.Utf8, "title": pl.Utf8})


def eng(rows, with_users=True, country=False):
    """rows: (query, pin_id, action, user_id[, country])."""
    data = {"query": [r[0] for r in rows], "pin_id": [r[1] for r in rows], "action": [r[2] for r in rows]}
    if with_users:
        data["user_id"] = [r[3] for r in rows]
    if country:
        data["country"] = [r[4] for r in rows]
    return pl.DataFrame(data, schema={k: pl.Utf8 for k in data})


def by_users(query, pin, action, users):
    return [(query, pin, action, f"u{i}") for i in range(users)]


def as_dict(frame, col):
    return {r["pin_id"]: r[col] for r in frame.iter_rows(named=True)}


def run(saves=NO_SAVES, boards=NO_BOARDS, engagements=None, **kw):
    kw.setdefault("action_weights", WEIGHTS)
    return aggregate(saves, boards, engagements if engagements is not None else eng([]), threads=2, **kw)


# -- board titles --------------------------------------------------------------------


def board_case():
    boards = pl.DataFrame(
        {
            "board_id": ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9", "b10"],
            "title": ["Cakes", "  CAKES ", "ｃａｋｅｓ", "Dinner", "Apple   pie", "anna@example.com", "Recipes via www.food.com", "Zebra", None, "ＡＰＰＬＥ PIE"],
        }
    )
    saves = pl.DataFrame(
        {
            "pin_id": ["p1"] * 12 + ["p2", "p2"],
            # p1: cakes 3 (b1+b2+b3), dinner 2, apple pie 2 (b5+b10), e-mail board 4 (scrubbed away),
            #     "recipes via" 1, no-title board 1 (dropped); p2: zebra 1, dinner 1
            "board_id": ["b1", "b2", "b3", "b4", "b4", "b5", "b10", "b6", "b6", "b6", "b6", "b7"] + ["b8", "b4"],
        }
    )
    saves = pl.concat([saves, pl.DataFrame({"pin_id": ["p1"], "board_id": ["b9"]})])
    return saves, boards


def test_board_titles_normalised_merged_and_ranked():
    saves, boards = board_case()
    agg = run(saves, boards)
    assert as_dict(agg.pin_boards, "boards") == {
        "p1": ["cakes", "apple pie", "dinner", "recipes via"],  # saves desc, then title asc
        "p2": ["dinner", "zebra"],  # 1 vs 1: the title breaks the tie
    }
    assert agg.pin_boards.schema["boards"] == pl.List(pl.Utf8)


@pytest.mark.parametrize("titles", [[None, "  ", "anna@example.com"], [None, None, None], None])
def test_board_titles_with_no_title_left_give_no_rows(titles):
    """Null, blank and personal-data-only titles (or no title column) count for nothing: no pin
    gets a list, and none gets an empty one."""
    from pinfeatures.build.aggregate import board_titles

    saves = pl.DataFrame({"pin_id": ["p", "p", "q"], "board_id": ["b1", "b2", "b3"]})
    boards = pl.DataFrame({"board_id": ["b1", "b2", "b3"]})
    if titles is not None:
        boards = boards.with_columns(pl.Series("title", titles, dtype=pl.Utf8))
    pin_boards, _ = board_titles(saves, boards)
    assert pin_boards.height == 0 and pin_boards.schema == {"pin_id": pl.Utf8, "boards": pl.List(pl.Utf8)}
    mixed = boards.with_columns(pl.Series("title", ["Cakes", " ", None], dtype=pl.Utf8))
    assert board_titles(saves, mixed)[0].rows() == [("p", ["cakes"])]


@pytest.mark.parametrize("k, expected", [(1, ["cakes"]), (2, ["cakes", "apple pie"]), (3, ["cakes", "apple pie", "dinner"])])
def test_board_titles_top_k(k, expected):
    saves, boards = board_case()
    assert as_dict(run(saves, boards, board_top_k=k).pin_boards, "boards")["p1"] == expected


# -- top queries ---------------------------------------------------------------------


def query_case():
    rows = []
    rows += by_users("red dress", "p1", "click", 3)  # score 3, 3 users: kept
    rows += by_users("Red  DRESS ", "p1", "click", 1)  # merges with "red dress": score 4
    rows += by_users("blue dress", "p1", "save", 3)  # score 9
    rows += by_users("green dress", "p1", "impression", 10)  # impressions only: never
    rows += [("pink dress", "p1", "save", "u0")] * 10 + [("pink dress", "p1", "save", "u1")]  # 2 users, many events
    rows += by_users("pink dress", "p1", "impression", 5)  # impression users do not count toward k
    rows += by_users("beta", "p1", "closeup", 4)  # score 2
    rows += by_users("alpha", "p1", "click", 2) + [("alpha", "p1", "impression", "u9")]  # 2 engaged users: dropped
    rows += by_users("alpha", "p2", "long_click", 3)  # p2: score 6
    rows += by_users("zeta", "p2", "long_click", 3)  # tie with alpha at 6: alpha first
    rows += by_users("anna@example.com", "p2", "save", 5)  # only PII: dropped
    rows += by_users("cake https://x.example.com/a", "p2", "click", 3)  # scrubbed to "cake"
    return rows


def test_top_queries_scores_threshold_and_ties():
    agg = run(engagements=eng(query_case()))
    assert as_dict(agg.pin_queries, "queries") == {
        "p1": ["blue dress", "red dress", "beta"],
        "p2": ["alpha", "zeta", "cake"],
    }
    assert agg.stats["threshold_unit"] == "users"
    assert agg.stats["events_query_scrubbed_empty"] == 5
    assert agg.stats["impression_only_pairs"] == 1
    # pairs: p1 red, blue, green, pink, beta, alpha; p2 alpha, zeta, cake
    assert agg.stats["query_pin_pairs"] == 9 and agg.stats["query_pin_pairs_kept"] == 6

    qp = agg.query_pins
    assert qp.select("pin_id", "query").rows() == [
        ("p1", "beta"), ("p1", "blue dress"), ("p1", "red dress"), ("p2", "alpha"), ("p2", "cake"), ("p2", "zeta"),
    ]
    red = qp.filter((pl.col("pin_id") == "p1") & (pl.col("query") == "red dress")).row(0, named=True)
    assert (red["events"], red["engaged_events"], red["users"], red["score"]) == (4, 4, 3, 4.0)
    alpha = qp.filter((pl.col("pin_id") == "p2") & (pl.col("query") == "alpha")).row(0, named=True)
    # traffic counts every event of the query over all pins, kept or not (p1's 3 alpha events too)
    assert (alpha["score"], alpha["users"], alpha["query_traffic"]) == (6.0, 3, 6)


def test_top_k_and_custom_weights():
    agg = run(engagements=eng(query_case()), query_top_k=1)
    assert as_dict(agg.pin_queries, "queries") == {"p1": ["blue dress"], "p2": ["alpha"]}
    # clicks worth more than saves: red dress (4 clicks) now beats blue dress (3 saves)
    weights = {**WEIGHTS, "click": 10.0}
    agg = run(engagements=eng(query_case()), action_weights=weights, query_top_k=2)
    assert as_dict(agg.pin_queries, "queries") == {"p1": ["red dress", "blue dress"], "p2": ["cake", "alpha"]}


def test_raw_forms_of_one_query_reach_k_together():
    """Users are read per raw query and counted under the normalised one: "Cake" (u0, u1) and
    "cake  " (u1, u2) reach k = 3 on p1 only together; "cake", typed in normal form on p2, is one
    query with them (its user counts for the query, not for p1's pair)."""
    rows = [("Cake", "p1", "click", "u0"), ("Cake", "p1", "click", "u1"), ("cake  ", "p1", "save", "u1"), ("cake  ", "p1", "click", "u2"),
            ("cake", "p2", "click", "u3")]
    agg = run(engagements=eng(rows), query_min_users=3)
    assert as_dict(agg.pin_queries, "queries") == {"p1": ["cake"]}
    assert agg.query_pins.select("query", "pin_id", "events", "engaged_events", "users", "score", "query_traffic").rows() == [
        ("cake", "p1", 4, 4, 3, 6.0, 5)]
    assert agg.query_traffic.select("query", "events", "engaged_events", "users").rows() == [("cake", 5, 5, 4)]
    assert (agg.stats["query_pin_pairs"], agg.stats["query_pin_pairs_kept"]) == (2, 1)


def test_impressions_never_qualify_even_with_positive_weight():
    rows = by_users("green dress", "p1", "impression", 10)
    agg = run(engagements=eng(rows), action_weights={**WEIGHTS, "impression": 5.0}, query_min_users=1)
    assert agg.pin_queries.height == 0 and agg.query_pins.height == 0


def test_min_users_threshold():
    rows = by_users("a", "p1", "click", 1) + by_users("b", "p1", "click", 2) + by_users("c", "p1", "click", 3)
    for k, expected in [(1, ["a", "b", "c"]), (2, ["b", "c"]), (3, ["c"]), (4, None)]:
        got = as_dict(run(engagements=eng(rows), query_min_users=k).pin_queries, "queries").get("p1")
        assert (sorted(got) if got else None) == expected, k


def test_without_user_id_the_threshold_counts_engaged_events():
    rows = [("a", "p1", "click", None)] * 3 + [("b", "p1", "save", None)] * 2 + [("b", "p1", "impression", None)] * 5
    agg = run(engagements=eng(rows, with_users=False))
    assert as_dict(agg.pin_queries, "queries") == {"p1": ["a"]}  # b: 2 engaged events < 3
    assert agg.stats["threshold_unit"] == "events" and "no user_id" in agg.stats["note"]
    assert agg.query_pins.get_column("users").to_list() == [None]
    # a user_id column that is entirely null is the same as none
    agg2 = run(engagements=eng(rows, with_users=True))
    assert agg2.stats["threshold_unit"] == "events"
    assert as_dict(agg2.pin_queries, "queries") == {"p1": ["a"]}


def test_country_is_the_most_frequent_ties_by_name():
    rows = [
        ("q", "p1", "click", "u1", "US"), ("q", "p1", "click", "u2", "FR"), ("q", "p1", "click", "u3", "FR"),
        ("q", "p1", "impression", "u4", "US"), ("q", "p1", "impression", "u5", "DE"),
        ("r", "p1", "click", "u1", "US"), ("r", "p1", "click", "u2", "FR"), ("r", "p1", "click", "u3", None),
    ]
    qp = run(engagements=eng(rows, country=True)).query_pins
    assert dict(qp.select("query", "country").rows()) == {"q": "FR", "r": "FR"}  # q: FR 2 = US 2 -> FR; r: FR 1 = US 1
    qp = run(engagements=eng([r[:4] + (None,) for r in rows], country=True)).query_pins
    assert qp.get_column("country").to_list() == [None, None]


def test_empty_inputs():
    agg = run()
    assert agg.pin_boards.height == 0 and agg.pin_queries.height == 0 and agg.query_pins.height == 0
    assert agg.stats["query_pin_pairs"] == 0


def test_results_do_not_depend_on_row_order():
    rows = query_case()
    a = run(engagements=eng(rows))
    b = run(engagements=eng(list(reversed(rows))))
    assert a.pin_queries.sort("pin_id").equals(b.pin_queries.sort("pin_id"))
    assert a.query_pins.equals(b.query_pins)


def test_sql_files_have_an_in_out_header():
    from pinfeatures.sqlrun import sql_dir

    names = sorted(p.stem for p in sql_dir().glob("*.sql"))
    assert {"board_titles", "query_norm", "query_pairs", "query_parts", "query_pins", "top_queries", "query_stats", "queries"} <= set(names)
    for name in names:
        header = load_sql(name).lstrip()
        assert header.startswith("--"), name
        assert "-- In:" in header and "-- Out:" in header, name


def test_run_sql_board_titles_directly():
    con = connect(threads=1)
    try:
        con.register("boards", pl.DataFrame({"board_id": ["b1", "b2"], "title": ["B", "a"]}).to_arrow())
        con.register("saves", pl.DataFrame({"pin_id": ["p", "p"], "board_id": ["b1", "b2"]}).to_arrow())
        con.register("title_norm", pl.DataFrame({"raw_title": ["B", "a"], "title": ["b", "a"]}).to_arrow())
        rows = run_sql(con, "board_titles", {"top_k": 5}).fetchall()
    finally:
        con.close()
    assert rows == [("p", ["a", "b"])]


def test_run_sql_runs_a_file_one_statement_at_a_time():
    """DuckDB takes prepared parameters only in a script's last statement: run_sql splits the file."""
    from pinfeatures.sqlrun import _statements

    text = ("-- header, $j;\n-- In: x;\nCREATE TEMP TABLE a AS\n  -- why, with $j;\n  SELECT $k AS v;\n\n-- a comment only\n;\n"
            "SELECT v + $k FROM a -- $m\n")
    # whole-line comments go (a `;` or `$name` in them is neither), a comment after code stays
    assert _statements(text) == ("CREATE TEMP TABLE a AS\n  SELECT $k AS v", "SELECT v + $k FROM a -- $m")
    assert all(len(_statements(load_sql(name))) == n for name, n in (("query_norm", 2), ("query_pairs", 14), ("query_parts", 4), ("board_titles", 1)))
