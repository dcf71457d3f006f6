"""Property-based tests (Hypothesis) of the invariants the contracts promise.

Each property runs the real code (real DuckDB for the aggregate, real Parquet for validation) on
small generated inputs. The example counts are modest so the suite stays fast; tests/conftest.py
holds the profiles (`dev`, and `ci`, derandomized, which scripts/test.sh selects).
"""

from __future__ import annotations

import polars as pl
import pytest
import regex
from conftest import small_tables, write_table
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from pinfeatures.build.aggregate import aggregate
from pinfeatures.build.assemble import assemble_texts
from pinfeatures.build.read import read_table
from pinfeatures.build.scrub import MAX_PHRASE_CHARS, clean_text, normalize_phrase
from pinfeatures.build.text import clean_column
from pinfeatures.build.tokens import ApproxCounter, truncate
from pinfeatures.build.validate import validate_tables
from pinfeatures.build.settings import BuildSettings
from pinfeatures.contracts import ACTIONS, expand
from pinfeatures.evaluate.metrics import spearman

COUNTER = ApproxCounter()
# Pieces that exercise every rule: markup, entities, controls and invisibles, personal data,
# full-width forms, CJK, digits and separators; joined with arbitrary text between them.
FRAGMENTS = [
    " ", "  ", "\t", "\n", "<b>", "</b>", "<script>", "<", ">", "b>", "&amp;", "&lt;", "&gt;", "amp;", "lt;", "&#128512;", "&", ";",
    "\x00", "\x07", "\u200b", "\u202e", "\ufeff", "\u200c", "anna@example.com", "@", ".", "-", "+",
    "www.", ".com", "https://", "415", "555", "0123", "612345678", "0", "７", "ｃａｋｅ", "猫", "ケーキ",
    "Chocolate", "cake", "Straße", "ﬁ", "é", "e\u0301",
]
texts = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=14).map("".join)


@given(text=texts, cap=st.integers(min_value=1, max_value=60))
@example(text="&amp;lt;", cap=60)  # decoded twice: "<"
@example(text="&lt;b&gt;x", cap=60)
@example(text="<<b>b>x", cap=60)  # stripping a tag joins another
@example(text="<\u200bb>x", cap=60)  # removing an invisible joins a tag
@example(text="&l\u200bt;b&gt;x", cap=60)  # ... or an entity
@example(text="&amp;amp;amp;amp;lt;", cap=60)  # nested past MAX_CLEAN_PASSES: dropped
def test_clean_text_is_idempotent_and_capped(text, cap):
    once = clean_text(text, cap)
    assert once is None or 0 < len(once) <= cap
    assert clean_text(once, cap) == once


@given(text=texts)
@example(text="&lt;b&gt;x")
@example(text="call 123 anna@example.com 456 7890")
def test_normalize_phrase_is_idempotent_and_capped(text):
    once = normalize_phrase(text)
    assert len(once) <= MAX_PHRASE_CHARS and once == once.strip()
    assert normalize_phrase(once) == once


@given(values=st.lists(st.one_of(st.none(), texts), max_size=8), cap=st.integers(min_value=1, max_value=60))
def test_polars_cleaning_equals_the_reference(values, cap):
    # text.py cleans whole columns in Rust; scrub.clean_text is the one-string reference of the same rules
    frame = pl.DataFrame({"title": values}, schema={"title": pl.Utf8})
    assert frame.select(clean_column("title", cap)).get_column("title").to_list() == [clean_text(v, cap) for v in values]


@given(pairs=st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=2, max_size=12))
def test_spearman_equals_scipy_with_ties(pairs):
    # few distinct values: ties on both sides, the average-rank case
    from scipy.stats import spearmanr

    x, y = [float(a) for a, _ in pairs], [float(b) for _, b in pairs]
    got = spearman(x, y)
    if len(set(x)) == 1 or len(set(y)) == 1:
        assert got is None  # undefined: one side constant
    else:
        assert got == pytest.approx(float(spearmanr(x, y).statistic), abs=1e-12)
    assert spearman(x, y[:-1]) is None  # lengths differ


# -- token budgets ------------------------------------------------------------------------

words = st.lists(
    st.one_of(st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzé0123456789"), min_size=1, max_size=14),
              st.sampled_from(["猫", "ケーキ", "!", "'", "--", "Straße"])),
    max_size=20,
)
separators = st.lists(st.sampled_from([" ", "  ", "\t", "", "-", ", "]), min_size=20, max_size=20)


_WORD_CHAR = regex.compile(r"[[\p{L}\p{M}\p{N}]--[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]]", regex.V1)


def _is_word_char(ch: str) -> bool:
    """A letter, mark or digit that is not CJK: what the tokenizer runs together into words."""
    return bool(_WORD_CHAR.fullmatch(ch))


@given(parts=words, seps=separators, budget=st.integers(min_value=0, max_value=25))
def test_truncate_stays_in_budget_and_cuts_between_words(parts, seps, budget):
    text = "".join(w + s for w, s in zip(parts, seps))
    out, truncated = truncate(text, budget, COUNTER)
    assert COUNTER.count(out) <= budget
    assert text.startswith(out)
    assert truncated == (COUNTER.count(text) > budget)
    if not truncated:
        assert out == text
        return
    assert out == out.rstrip()
    if out and _is_word_char(out[-1]) and _is_word_char(text[len(out)]):
        # a cut inside a word only when there is no boundary to back off to: the text is that one word
        assert all(_is_word_char(c) for c in out), (text, budget, out)


# -- the ladder is nested -------------------------------------------------------------------

maybe_text = st.one_of(st.none(), texts)
feature_rows = st.lists(
    st.fixed_dictionaries({
        "title": maybe_text, "description": maybe_text, "caption": maybe_text,
        "boards": st.lists(texts, max_size=3), "queries": st.lists(texts, max_size=3),
    }),
    min_size=1, max_size=4,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(rows=feature_rows)
def test_ladder_texts_are_nested(rows):
    schema = {"pin_id": pl.Utf8, "title": pl.Utf8, "description": pl.Utf8, "caption": pl.Utf8,
              "boards": pl.List(pl.Utf8), "queries": pl.List(pl.Utf8)}
    features = pl.DataFrame([{"pin_id": f"p{i}", **r} for i, r in enumerate(rows)], schema=schema)
    ladder = expand("ladder")
    cfg = BuildSettings()  # per-source budgets sum below the total: the total budget never cuts a line away
    texts_ = assemble_texts(features, ladder, cfg, COUNTER)
    for pin_id in features.get_column("pin_id"):
        by_variant = dict(texts_.filter(pl.col("pin_id") == pin_id).select("variant", "text").rows())
        previous: list[str] = []
        for rung in ladder:
            lines = by_variant[rung].split(cfg.field_separator) if by_variant[rung] else []
            kept = iter(lines)
            assert all(line in kept for line in previous), (rung, previous, lines)  # in order, each one kept
            previous = lines


# -- read = valid + rejected ------------------------------------------------------------------

ids = st.one_of(st.none(), st.sampled_from(["p1", "p2", "p3", "p4", "p9", "", "  ", " p1 "]))
actions = st.one_of(st.none(), st.sampled_from([*ACTIONS, " CLICK ", "purchase", ""]))
engagement_rows = st.lists(
    st.fixed_dictionaries({"query": st.one_of(st.none(), texts), "pin_id": ids, "action": actions,
                           "user_id": st.sampled_from(["u1", "u2", "u3", "u4"])}),
    max_size=25,
)
save_rows = st.lists(
    st.fixed_dictionaries({"pin_id": ids, "board_id": st.one_of(st.none(), st.sampled_from(["b1", "b2", "b9", ""]))}),
    max_size=10,
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(eng=engagement_rows, saves=save_rows, fmt=st.sampled_from(["parquet", "csv", "jsonl"]))
def test_every_row_read_is_valid_or_rejected_once(tmp_path_factory, eng, saves, fmt):
    assume(fmt != "jsonl" or (eng and saves))  # an empty JSONL file names no columns: an input error, tested elsewhere
    folder = tmp_path_factory.mktemp("read")
    tables = {
        **small_tables(),
        "engagements": pl.DataFrame(eng, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8}),
        "saves": pl.DataFrame(saves, schema={"pin_id": pl.Utf8, "board_id": pl.Utf8}),
    }
    paths = {name: write_table(frame, folder / name, fmt) for name, frame in tables.items()}
    read = {name: read_table(path, name) for name, path in paths.items()}
    valid = validate_tables(read)
    for name, frame in tables.items():
        kept = getattr(valid, name).height
        rejected = sorted(valid.rejects.filter(pl.col("table") == name).get_column("row").to_list())
        assert valid.counts[name] == {"read": frame.height, "valid": kept, "rejected": len(rejected)}
        assert kept + len(rejected) == frame.height
        # each row once; a CSV row is the file line where its record starts (the header is line 1)
        first, last = (2, paths[name].read_bytes().count(b"\n")) if fmt == "csv" else (1, frame.height)
        assert len(set(rejected)) == len(rejected) and all(first <= r <= last for r in rejected)


# -- privacy: nothing below k distinct users -----------------------------------------------------

queries = st.sampled_from(["cake", "Cake ", "CAKE", "garden", "anna@example.com", "red dress", "tarte", "x"])
privacy_rows = st.lists(
    st.fixed_dictionaries({"query": queries, "pin_id": st.sampled_from(["p1", "p2", "p3"]),
                           "action": st.sampled_from(ACTIONS), "user_id": st.sampled_from(["u1", "u2", "u3", "u4", "u5"])}),
    max_size=40,
)


def passing_pairs(rows: list[dict], k: int) -> set[tuple[str, str]]:
    """The oracle: (normalised query, pin) pairs with >= k distinct users over engaged (non-impression) events."""
    users: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        q = normalize_phrase(r["query"])
        if q and r["action"] != "impression":
            users.setdefault((q, r["pin_id"]), set()).add(r["user_id"])
    return {pair for pair, us in users.items() if len(us) >= k}


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(rows=privacy_rows, k=st.integers(min_value=1, max_value=4))
def test_no_query_below_k_distinct_users_reaches_the_aggregates(rows, k):
    eng = pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8})
    tables = small_tables()
    agg = aggregate(tables["saves"], tables["boards"], eng, action_weights=BuildSettings().action_weights,
                    query_min_users=k, query_top_k=3, threads=1)
    allowed = passing_pairs(rows, k)
    assert set(agg.query_pins.select("query", "pin_id").iter_rows()) == allowed
    for pin_id, qs in agg.pin_queries.select("pin_id", "queries").iter_rows():
        assert {(q, pin_id) for q in qs} <= allowed
        assert len(qs) == min(3, sum(1 for _, p in allowed if p == pin_id))
    assert set(agg.query_traffic.get_column("query")) == {q for q, _ in allowed}


pair_rows = st.lists(
    st.fixed_dictionaries({"query": queries, "pin_id": st.sampled_from(["p1", "p2", "p3"]),
                           "action": st.sampled_from(ACTIONS), "user_id": st.sampled_from(["u1", "u2", "u3", None]),
                           "country": st.sampled_from(["US", "FR", "DE", None]), "locale": st.sampled_from(["en-US", "fr_FR", "DE", None])}),
    max_size=40,
)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(rows=pair_rows, k=st.integers(min_value=1, max_value=3))
def test_query_pairs_equal_a_python_reference(rows, k):
    """query_pins' numbers for every kept pair, and each pin's top queries, computed here event by
    event: events, engaged events, distinct users (null ids are no user; with no id at all, k
    counts engaged events), action-weighted score, the most frequent country (ties by name)."""
    weights = dict(BuildSettings().action_weights)
    eng = pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8, "country": pl.Utf8, "locale": pl.Utf8})
    tables = small_tables()
    agg = aggregate(tables["saves"], tables["boards"], eng, action_weights=weights, query_min_users=k, query_top_k=2, threads=2)
    pairs: dict[tuple[str, str], dict] = {}
    for r in rows:
        q = normalize_phrase(r["query"])
        if not q:
            continue
        p = pairs.setdefault((q, r["pin_id"]), {"events": 0, "engaged": 0, "users": set(), "score": 0.0, "countries": {}})
        p["events"] += 1
        p["score"] += weights[r["action"]]
        if r["action"] != "impression":
            p["engaged"] += 1
            if r["user_id"] is not None:
                p["users"].add(r["user_id"])
        if r["country"] is not None:
            p["countries"][r["country"]] = p["countries"].get(r["country"], 0) + 1
    # no user id anywhere: k counts engaged events and users is null (with a warning)
    use_users = any(r["user_id"] is not None for r in rows)
    kept = {pair: p for pair, p in pairs.items() if p["engaged"] > 0 and (len(p["users"]) if use_users else p["engaged"]) >= k}
    expected = sorted(
        (q, pin, p["events"], p["engaged"], len(p["users"]) if use_users else None, round(p["score"], 6),
         min(p["countries"], key=lambda c: (-p["countries"][c], c)) if p["countries"] else None)
        for (q, pin), p in kept.items()
    )
    got = [(q, pin, e, ee, u, round(s, 6), c) for q, pin, e, ee, u, s, c in
           agg.query_pins.select("query", "pin_id", "events", "engaged_events", "users", "score", "country").iter_rows()]
    assert sorted(got) == expected
    top = {pin: [q for q, _ in sorted(((q, p["score"]) for (q, pn), p in kept.items() if pn == pin), key=lambda t: (-t[1], t[0]))][:2]
           for pin in {pin for _, pin in kept}}
    assert dict(agg.pin_queries.select("pin_id", "queries").iter_rows()) == top


@pytest.mark.slow  # eight real builds: left out of the mutation runs (scripts/mutation.sh), not of the suite
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(rows=privacy_rows.filter(bool), k=st.integers(min_value=2, max_value=3))
def test_no_query_below_k_reaches_any_build_output(tmp_path_factory, rows, k):
    from conftest import build, write_inputs

    folder = tmp_path_factory.mktemp("privacy")
    eng = pl.DataFrame(rows, schema={"query": pl.Utf8, "pin_id": pl.Utf8, "action": pl.Utf8, "user_id": pl.Utf8})
    write_inputs(folder / "in", {**small_tables(), "engagements": eng})
    build(folder / "out", input=str(folder / "in"), min_users=k, variants="all")
    allowed = passing_pairs(rows, k)
    out = folder / "out"
    features = pl.read_parquet(out / "features.parquet")
    for pin_id, qs in features.select("pin_id", "queries").iter_rows():
        assert {(q, pin_id) for q in qs or []} <= allowed
    assert set(pl.read_parquet(out / "query_pins.parquet").select("query", "pin_id").iter_rows()) == allowed
    texts_ = pl.read_parquet(out / "texts.parquet")
    searches = {
        (q, pin_id)
        for pin_id, text in texts_.select("pin_id", "text").iter_rows()
        for line in text.split("\n") if line.startswith("Searches: ")
        for q in line.removeprefix("Searches: ").split(" | ")
    }
    assert searches <= allowed
    if (out / "queries.parquet").is_file():  # one row per privacy-passing query
        assert set(pl.read_parquet(out / "queries.parquet").get_column("query")) == {q for q, _ in allowed}

