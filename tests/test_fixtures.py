"""fixtures/make_fixtures.py: deterministic output equal to the committed files, and the properties
the demo build, the evaluation and the hostile-input tests rely on."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import jsonl_objects, make_fixtures_module

from pinfeatures.build.scrub import normalize_phrase

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures"
SUBDIRS = ("input", "images", "hostile")


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for sub in SUBDIRS for p in sorted((root / sub).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(name)
        proc = subprocess.run([sys.executable, str(FIX / "make_fixtures.py"), "--out", str(out)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    return outs[0], outs[1]


def test_generator_is_deterministic(generated: tuple[Path, Path]) -> None:
    a, b = (tree_bytes(p) for p in generated)
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_committed_fixtures_match_generator(generated: tuple[Path, Path]) -> None:
    fresh, committed = tree_bytes(generated[0]), tree_bytes(FIX)
    assert sorted(fresh) == sorted(committed), "rerun `python fixtures/make_fixtures.py` and commit the result"
    differ = [k for k in fresh if fresh[k] != committed[k]]
    assert differ == [], f"committed fixtures differ from the generator (pyarrow/Pillow version?): {differ[:5]}"


def test_fixture_size_budget() -> None:
    total = sum(len(v) for v in tree_bytes(FIX).values())
    assert total < 3 * 1024 * 1024
    images = sum(p.stat().st_size for p in (FIX / "images").iterdir())
    assert images < 1024 * 1024


# -- clean input --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pins() -> pl.DataFrame:
    return pl.read_parquet(FIX / "input" / "pins.parquet")


def test_pins_schema_and_ids(pins: pl.DataFrame) -> None:
    assert pins.columns == ["pin_id", "title", "description", "image", "link", "created_at"]
    assert 250 <= pins.height <= 350
    assert pins["pin_id"].n_unique() == pins.height and pins["pin_id"].null_count() == 0


def test_pins_languages(pins: pl.DataFrame) -> None:
    sys.path.insert(0, str(FIX))
    import make_fixtures as mf

    text = pins.select(pl.concat_str([pl.col("title"), pl.col("description").fill_null("")], separator=" ")).to_series().to_list()
    per_lang = {}
    for lang in ("en", "es", "fr", "de", "ja", "ar", "pt", "hi"):
        phrases = [v[1][lang].lower() for v in mf.TOPICS.values()]
        per_lang[lang] = sum(any(ph in t.lower() for ph in phrases) for t in text)
    assert all(n >= 8 for n in per_lang.values()), per_lang
    # scripts: CJK, Arabic (right-to-left), Devanagari
    assert any("\u3040" <= ch <= "\u30ff" for t in text for ch in t)
    assert any("\u0600" <= ch <= "\u06ff" for t in text for ch in t)
    assert any("\u0900" <= ch <= "\u097f" for t in text for ch in t)


def test_pins_vague_titles_empty_descriptions_repins_images(pins: pl.DataFrame) -> None:
    titles = pins["title"].to_list()
    assert "My favorite!!" in titles
    assert any(t and all(not ch.isalnum() for ch in t.replace(" ", "")) for t in titles)  # emoji-only
    assert (pins["description"] == "").sum() >= 20
    assert pins["description"].null_count() >= 3
    img = pins["image"]
    assert img.null_count() >= 2
    assert img.str.starts_with("http").sum() >= 2
    # repins share an earlier pin's image (and its title/description)
    shared = pins.filter(pl.col("image").is_not_null()).group_by("image").agg(pl.len(), pl.col("title").n_unique().alias("titles"))
    assert shared.filter(pl.col("len") > 1).height >= 30
    assert shared["titles"].max() == 1
    for rel in img.drop_nulls().filter(~img.drop_nulls().str.starts_with("http")).unique().to_list():
        path = FIX / "images" / rel
        with Image.open(path) as im:
            im.load()
            assert im.size == (64, 64)


def test_boards_normalisation_and_pii() -> None:
    boards = pl.read_csv(FIX / "input" / "boards.csv")
    assert boards.columns == ["board_id", "title", "description"]
    titles = boards["title"].to_list()
    norm = [normalize_phrase(t) for t in titles]
    assert norm.count("chocolate cake") >= 4  # case, whitespace, full-width variants merge
    assert len(set(norm)) < len(set(titles))
    assert any("@" in t for t in titles) and any("www." in t for t in titles) and any("+1" in t for t in titles)
    assert not any("@" in n or "www." in n for n in norm)
    saves = pl.read_parquet(FIX / "input" / "saves.parquet")
    assert saves.columns == ["pin_id", "board_id", "user_id", "saved_at"]
    assert set(saves["board_id"]) <= set(boards["board_id"])


def test_engagements_zipf_users_and_actions() -> None:
    ev = pl.read_ndjson(FIX / "input" / "engagements.jsonl")
    assert ev.columns == ["query", "pin_id", "action", "user_id", "ts", "country", "locale"]
    actions = Counter(ev["action"].to_list())
    assert set(actions) == {"impression", "click", "closeup", "save", "long_click"}
    assert actions["impression"] > 0.6 * ev.height
    ev = ev.with_columns(pl.col("query").map_elements(normalize_phrase, return_dtype=pl.Utf8))
    counts = sorted(Counter(ev["query"].to_list()).values(), reverse=True)
    # Zipf-like: a steep head and a long tail
    assert counts[0] >= 3 * counts[9] and counts[9] >= 2 * counts[len(counts) // 2]
    pairs = ev.filter(pl.col("action") != "impression").group_by("query", "pin_id").agg(pl.col("user_id").n_unique().alias("users"))
    kept = pairs.filter(pl.col("users") >= 3).height
    dropped = pairs.filter(pl.col("users") < 3).height
    assert kept >= 30 and dropped >= 100  # the k=3 privacy threshold keeps some pairs and drops others
    assert ev["user_id"].n_unique() >= 100


def test_judgments() -> None:
    j = pl.read_csv(FIX / "input" / "judgments.csv")
    pins = set(pl.read_parquet(FIX / "input" / "pins.parquet")["pin_id"])
    assert j.columns == ["query", "pin_id", "label"]
    assert 35 <= j["query"].n_unique() <= 45
    per_query = j.group_by("query").len()["len"]
    assert per_query.min() >= 5 and per_query.max() <= 16
    assert set(j["label"].unique()) <= {1, 2, 3, 4, 5} and {1, 3, 5} <= set(j["label"].unique())
    assert 1 <= (~j["pin_id"].is_in(list(pins))).sum() <= 6


# -- hostile input ------------------------------------------------------------------------------

def json_lines(path: Path) -> list[dict]:
    """The lines of a hostile JSONL file that parse (each has one that does not, on purpose)."""
    rows, bad = jsonl_objects(path)
    assert bad == 1, path
    return rows


def test_hostile_cases_present() -> None:
    h = FIX / "hostile"
    pins = json_lines(h / "pins.jsonl")
    ids = [p["pin_id"] for p in pins]
    assert None in ids and "" in ids and len(ids) - len(set(ids)) >= 1
    titles = [p["title"] or "" for p in pins]
    descs = [p["description"] or "" for p in pins]
    assert any("<script>" in t for t in titles)
    assert any("&amp;" in d for d in descs)
    assert any("\x00" in t for t in titles)
    assert any("\u202e" in t for t in titles)
    assert max(len(d) for d in descs) >= 200_000
    assert any("\nTitle: FREE MONEY" in d for d in descs)
    assert "../../etc/passwd" in [p["image"] for p in pins]
    assert "http://169.254.169.254/latest/meta-data/" in [p["image"] for p in pins]  # blocked_address
    assert 1.5 in ids and any("\ud800" in t for t in titles)  # bad_value rejects of their lines
    saves = pq.read_table(h / "saves.parquet")
    assert str(saves.schema.field("pin_id").type) == "int64"
    ev = json_lines(h / "engagements.jsonl")
    actions = {e["action"] for e in ev}
    assert {"CLICK ", "purchase", None} <= actions
    queries = {e["query"] for e in ev}
    assert {"anna@example.com", "+1 (415) 555-0123", "www.spam-shop.com/cheap", "🎂🍰"} <= queries
    assert any(e["pin_id"] == "nope" for e in ev)
    assert (h / "images" / "empty.jpg").stat().st_size == 0
    with pytest.raises(Exception):
        Image.open(h / "images" / "not_an_image.jpg")
    with pytest.raises(OSError):
        with Image.open(io.BytesIO((h / "images" / "truncated.jpg").read_bytes())) as im:
            im.load()
    boards = pl.read_csv(h / "boards.csv", truncate_ragged_lines=True)
    # planted personal data and below-k queries (tests/test_privacy_sweep.py looks for them in every output)
    mf = make_fixtures_module()
    assert {e["query"] for e in ev} >= set(mf.PLANTED_QUERIES) | set(mf.BELOW_K_QUERIES)
    assert set(boards.get_column("title").to_list()) >= set(mf.PLANTED_BOARD_TITLES)
    assert sum(mf.PLANTED_USER_ID == e["user_id"] for e in ev) >= len(mf.PLANTED_QUERIES)
    assert boards["board_id"].null_count() >= 1 and boards["board_id"].is_duplicated().any()
