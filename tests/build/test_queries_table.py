"""queries.parquet: sql/queries.sql (real DuckDB) + query languages + bands on a hand-made input, and the privacy rule on fixtures/hostile."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from conftest import jsonl_objects

from pinfeatures.build.aggregate import aggregate
from pinfeatures.build.language import LanguageSettings, detect_languages
from pinfeatures.build.queries import QUERY_COLUMNS, query_languages, query_table
from pinfeatures.build.run import run_build
from pinfeatures.build.scrub import normalize_phrase
from pinfeatures.build.settings import BuildSettings

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = dict(BuildSettings().action_weights)  # impression 0, closeup .5, click 1, long_click 2, save 3
NO_SAVES = pl.DataFrame(schema={"pin_id": pl.Utf8, "board_id": pl.Utf8})
NO_BOARDS = pl.DataFrame(schema={"board_id": pl.Utf8, "title": pl.Utf8})

PINS = pl.DataFrame(
    {
        "pin_id": ["p1", "p2", "p3", "p4"],
        "title": [
            "The best chocolate cake recipe for a birthday party with friends",
            "La meilleure recette de gâteau au chocolat pour un anniversaire",
            "Das beste Rezept für Schokoladenkuchen zum Geburtstag mit Freunden",
            "ok",  # und: too short
        ],
        "description": [None, None, None, None],
    },
    schema_overrides={"description": pl.Utf8},
)


def _events(query, pin, action, users, locale=None):
    return [{"query": query, "pin_id": pin, "action": action, "user_id": u, "locale": locale} for u in users]


def engagements() -> pl.DataFrame:
    rows = (
        # 'chocolate cake': 2 users click p1 (en_US, en-US), 1 impression on p2 (fr-FR): locale says en
        _events("chocolate cake", "p1", "click", ["u1"], "en_US") + _events("Chocolate Cake ", "p1", "click", ["u2"], "en-US")
        + _events("chocolate cake", "p2", "impression", ["u3"], "fr-FR")
        # 'gateau': 2 users save p2 (kept), 1 clicks p1 (not kept, so p1 does not vote); no locale: pins say fr
        + _events("gateau", "p2", "save", ["u1", "u2"]) + _events("gateau", "p1", "click", ["u3"])
        # 'kuchen rezept': kept on p4, whose language is und; no locale: the text says de
        + _events("kuchen rezept", "p4", "click", ["u1", "u2"]) + _events("kuchen rezept", "p4", "impression", ["u3", "u4"])
        # 'tea': malformed locales are ignored; zh_TW is langdetect's zh-tw (2 votes) over en (1)
        + _events("tea", "p1", "long_click", ["u1"], "zh_TW") + _events("tea", "p1", "click", ["u2"], "zh-Hant-TW")
        + _events("tea", "p1", "click", ["u3"], "en_US") + _events("tea", "p1", "click", ["u4", "u5", "u6"], "POSIX")
        + _events("tea", "p1", "click", ["u7"], "not a locale")
        # below k = 2: one user, or impressions only, or nothing but an e-mail address: never in the table
        + _events("rare query", "p1", "click", ["u1"], "en_US")
        + _events("just looking", "p1", "impression", ["u1", "u2", "u3"], "en_US")
        + _events("anna@example.com", "p1", "click", ["u1", "u2"], "en_US")
    )
    return pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "locale": pl.Utf8})


def build_queries(events: pl.DataFrame, cutoffs=(0.5, 0.8)) -> pl.DataFrame:
    agg = aggregate(NO_SAVES, NO_BOARDS, events, action_weights=WEIGHTS, query_min_users=2, query_top_pins=2, threads=2)
    settings = LanguageSettings()
    pins, prior, _ = detect_languages(PINS, None, settings)
    assert pins.get_column("language").to_list() == ["en", "fr", "de", "und"]
    languages = query_languages(agg.query_traffic, agg.query_pins, pins.select("pin_id", "language"), prior, settings)
    return query_table(agg.query_traffic, languages, cutoffs)


def test_exact_rows():
    table = build_queries(engagements())
    assert table.columns == list(QUERY_COLUMNS)
    assert table.rows(named=True) == [
        # 17 events over the four queries; a band by the share before the query: 0, 7/17, 11/17, 14/17
        {"query": "tea", "events": 7, "engaged_events": 7, "users": 7, "band": "head", "query_language": "zh-tw",
         "query_language_source": "locale", "top_pins": ["p1"]},
        {"query": "kuchen rezept", "events": 4, "engaged_events": 2, "users": 2, "band": "head", "query_language": "de",
         "query_language_source": "text", "top_pins": ["p4"]},
        {"query": "chocolate cake", "events": 3, "engaged_events": 2, "users": 2, "band": "torso", "query_language": "en",
         "query_language_source": "locale", "top_pins": ["p1"]},
        {"query": "gateau", "events": 3, "engaged_events": 3, "users": 3, "band": "tail", "query_language": "fr",
         "query_language_source": "pins", "top_pins": ["p2"]},
    ]


def test_pin_vote_is_weighted_by_engagement_and_top_pins_are_capped():
    """Two kept pins vote: p2 (fr) with 2 saves (6) beats p1 (en) with 3 clicks (3); top_pins keeps 2 of 3."""
    events = pl.DataFrame(
        _events("recette", "p1", "click", ["u1", "u2", "u3"]) + _events("recette", "p2", "save", ["u1", "u2"])
        + _events("recette", "p3", "closeup", ["u1", "u2"]),
        schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "locale": pl.Utf8},
    )
    row = build_queries(events).row(0, named=True)
    assert (row["query_language"], row["query_language_source"]) == ("fr", "pins")
    assert row["top_pins"] == ["p2", "p1"] and row["band"] == "head"


def test_top_pins_tied_on_score_go_by_pin_id():
    """Three kept pins with the same score: the two listed are the lowest ids, in order (queries.sql's tie-break)."""
    events = pl.DataFrame(
        _events("tarte", "p3", "click", ["u1", "u2"]) + _events("tarte", "p2", "click", ["u3", "u4"]) + _events("tarte", "p4", "click", ["u5", "u6"]),
        schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "locale": pl.Utf8},
    )
    assert build_queries(events).row(0, named=True)["top_pins"] == ["p2", "p3"]


def test_no_user_or_locale_columns():
    """Without user_id the threshold counts engaged events and users is null; without locale the pins decide."""
    events = engagements().drop("user_id", "locale")
    table = build_queries(events)
    assert table.get_column("users").null_count() == table.height
    assert "rare query" not in table.get_column("query").to_list()
    assert dict(zip(table["query"], table["query_language_source"]))["chocolate cake"] == "pins"


def test_hostile_build_keeps_only_queries_past_the_threshold(tmp_path):
    """Every query in queries.parquet has a pin with >= k distinct engaging users, counted here from the raw file."""
    k = 2
    cfg = BuildSettings(input=str(ROOT / "fixtures" / "hostile"), out=str(tmp_path / "out"), quiet=True, min_users=k)
    run_build(cfg)
    queries = pl.read_parquet(tmp_path / "out" / "queries.parquet")
    assert queries.columns == list(QUERY_COLUMNS) and queries.height > 0
    users: dict[tuple[str, str], set[str]] = {}
    for r in jsonl_objects(ROOT / "fixtures" / "hostile" / "engagements.jsonl")[0]:
        if not isinstance(r.get("query"), str) or r.get("user_id") is None:
            continue
        if str(r.get("action", "")).strip().lower() not in ("click", "closeup", "save", "long_click"):
            continue
        users.setdefault((normalize_phrase(r["query"]), str(r.get("pin_id"))), set()).add(str(r["user_id"]))
    for q in queries.get_column("query").to_list():
        assert max(len(u) for (query, _), u in users.items() if query == q) >= k, q
    # and the table says nothing a kept (query, pin) pair does not: same queries as query_pins
    qp = pl.read_parquet(tmp_path / "out" / "query_pins.parquet")
    assert set(queries["query"]) == set(qp["query"])
    assert (qp.get_column("users") >= k).all()
    assert not queries.filter(pl.col("query").str.contains(r"@|https?://")).height
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["outputs"]["queries"]["rows"] == queries.height


@pytest.mark.parametrize("locale, expected", [("pt_BR.UTF-8", "pt"), ("ZH", "zh-cn"), ("es-419", "es"), ("e", None), ("", None), ("en_US@euro", "en")])
def test_locale_forms(locale, expected):
    events = pl.DataFrame(
        _events("q", "p1", "click", ["u1", "u2"], locale),
        schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "locale": pl.Utf8},
    )
    agg = aggregate(NO_SAVES, NO_BOARDS, events, action_weights=WEIGHTS, query_min_users=2, threads=2)
    assert agg.query_traffic.get_column("locale_language").to_list() == [expected]


SCHEMA = {"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "locale": pl.Utf8}


def test_locale_vote_counts_events_not_pins():
    """fr has 3 events on one pin, en 2 events on two pins: the vote counts events, so fr wins."""
    events = pl.DataFrame(
        _events("pain", "p1", "click", ["u1", "u2", "u3"], "fr-FR") + _events("pain", "p2", "click", ["u4"], "en-US")
        + _events("pain", "p3", "click", ["u5"], "en-US"),
        schema=SCHEMA,
    )
    agg = aggregate(NO_SAVES, NO_BOARDS, events, action_weights=WEIGHTS, query_min_users=2, threads=2)
    assert agg.query_traffic.select("query", "events", "locale_language").rows() == [("pain", 5, "fr")]


def test_shard_parts_keep_queries_with_no_kept_pair_here():
    """A shard returns the parts of every query, kept here or not: another shard's pin may make it pass."""
    events = pl.DataFrame(
        _events("soup", "p1", "click", ["u1"], "en-US") + _events("soup", "p1", "impression", ["u2"], "EN_gb")
        + _events("stew", "p2", "save", ["u1", "u3"], "de-DE"),
        schema=SCHEMA,
    )
    agg = aggregate(NO_SAVES, NO_BOARDS, events, action_weights=WEIGHTS, query_min_users=2, threads=2, use_users=True, query_parts=True)
    assert agg.query_traffic is None and agg.parts is not None
    parts = {name: frame.sort(frame.columns).rows() for name, frame in agg.parts.items()}
    assert parts == {
        "query_traffic": [("soup", 2, 1), ("stew", 2, 2)],
        "query_users": [("soup", "u1"), ("stew", "u1"), ("stew", "u3")],
        "query_locales": [("soup", "en", 2), ("stew", "de", 2)],
    }
    assert agg.query_pins.select("query", "pin_id", "users").rows() == [("stew", "p2", 2)]
