"""bench/pandas_baseline.py on small hand-made tables, with exact expected rankings.

The tables are written as real Parquet / CSV / JSONL files and read back by the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

from pandas_baseline import pandas_aggregate  # noqa: E402

from pinfeatures.build.settings import BuildSettings  # noqa: E402
from pinfeatures.caption.settings import CaptionSettings  # noqa: E402
from pinfeatures.contracts import DEFAULT_ACTION_WEIGHTS  # noqa: E402
from pinfeatures.errors import InputError  # noqa: E402


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def as_dict(df: pd.DataFrame, col: str) -> dict[str, list[str]]:
    return {str(p): list(v) for p, v in zip(df["pin_id"], df[col])}


@pytest.fixture()
def small(tmp_path: Path) -> Path:
    """pins p1..p4; boards with case/space/full-width variants and PII; engagements with ties."""
    pq.write_table(pa.table({"pin_id": ["p1", "p2", "p3", "p4"], "title": ["a", "b", "c", "d"],
                             "description": ["", "", "", ""], "image": [None] * 4}), tmp_path / "pins.parquet")
    pd.DataFrame({
        "board_id": ["b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8"],
        "title": ["Cakes", "CAKES ", "Ｃａｋｅｓ", "Desserts", "anna@example.com", "Zebra", "Apple", "   "],
    }).to_csv(tmp_path / "boards.csv", index=False)
    saves = [
        # p1: 'cakes' via 3 boards = 3 saves; 'desserts' 2; 'zebra' 1 and 'apple' 1 tie -> title asc
        ("p1", "b1"), ("p1", "b2"), ("p1", "b3"), ("p1", "b4"), ("p1", "b4"), ("p1", "b6"), ("p1", "b7"),
        ("p1", "b5"),           # title is only an e-mail: scrubbed to '' and dropped
        ("p1", "b8"),           # blank title: dropped
        ("p2", "b6"),
        ("p9", "b1"),           # unknown pin: excluded
        ("p2", "nope"),         # unknown board: excluded
    ]
    pq.write_table(pa.table({"pin_id": [s[0] for s in saves], "board_id": [s[1] for s in saves]}),
                   tmp_path / "saves.parquet")
    ev = []

    def add(q, pin, action, user):
        ev.append({"query": q, "pin_id": pin, "action": action, "user_id": user})

    # p1 'chocolate cake': 3 users click (3.0) + save by u1 (3.0) -> 6.0; variants merge by normalisation
    add("chocolate cake", "p1", "click", "u1")
    add("Chocolate Cake", "p1", "click", "u2")
    add(" chocolate  cake ", "p1", "CLICK ", "u3")   # action normalises to 'click'
    add("chocolate cake", "p1", "save", "u1")
    add("chocolate cake", "p1", "impression", "u9")
    # p1 'brownies': 3 users, long_click x3 -> 6.0: ties with 'chocolate cake', 'brownies' < 'chocolate cake'
    for u in ("u1", "u2", "u3"):
        add("brownies", "p1", "long_click", u)
    # p1 'cake': closeup by 3 users -> 1.5
    for u in ("u4", "u5", "u6"):
        add("cake", "p1", "closeup", u)
    # p1 'mud pie': huge score but only 2 distinct engaged users -> dropped by k=3
    for u in ("u1", "u2", "u1", "u2", "u1"):
        add("mud pie", "p1", "save", u)
    # p1 'tiramisu': 5 users but impressions only -> dropped (no engaged event)
    for u in ("u1", "u2", "u3", "u4", "u5"):
        add("tiramisu", "p1", "impression", u)
    # p1 'pavlova': 2 engaged users + 3 users with impressions only -> dropped (users count engaged events)
    add("pavlova", "p1", "click", "u1")
    add("pavlova", "p1", "click", "u2")
    for u in ("u3", "u4", "u5"):
        add("pavlova", "p1", "impression", u)
    # p1 'purchase-only': unknown action never counts
    for u in ("u1", "u2", "u3"):
        add("flan", "p1", "purchase", u)
    # query that is only an e-mail: scrubbed to '' and dropped
    for u in ("u1", "u2", "u3"):
        add("someone@example.com", "p1", "save", u)
    # p2: 'scones' 3 users clicks (3.0); unknown pin p9 excluded
    for u in ("u1", "u2", "u3"):
        add("scones", "p2", "click", u)
        add("scones", "p9", "click", u)
    write_jsonl(ev, tmp_path / "engagements.jsonl")
    return tmp_path


def test_rankings_exact(small: Path) -> None:
    boards, queries = pandas_aggregate(small, BuildSettings())
    assert as_dict(boards, "boards") == {
        "p1": ["cakes", "desserts", "apple", "zebra"],
        "p2": ["zebra"],
    }
    assert as_dict(queries, "queries") == {
        "p1": ["brownies", "chocolate cake", "cake"],
        "p2": ["scones"],
    }


def test_top_k_and_threshold_settings(small: Path) -> None:
    cfg = BuildSettings(board_top_k=2, query_top_k=1, min_users=2)
    boards, queries = pandas_aggregate(small, cfg)
    assert as_dict(boards, "boards")["p1"] == ["cakes", "desserts"]
    # k=2 lets 'mud pie' (save x5 = 15.0, 2 users) in, and it ranks first
    assert as_dict(queries, "queries") == {"p1": ["mud pie"], "p2": ["scones"]}
    cfg = BuildSettings(min_users=2, query_top_k=10)
    _, queries = pandas_aggregate(small, cfg)
    assert as_dict(queries, "queries")["p1"] == ["mud pie", "brownies", "chocolate cake", "pavlova", "cake"]


def test_action_weights_from_config(small: Path) -> None:
    cfg = BuildSettings(action_weights={**DEFAULT_ACTION_WEIGHTS, "closeup": 10.0})
    _, queries = pandas_aggregate(small, cfg)
    # 'cake' = 3 closeups x 10 = 30 now ranks first
    assert as_dict(queries, "queries")["p1"] == ["cake", "brownies", "chocolate cake"]


def test_without_user_column_counts_engaged_events(tmp_path: Path) -> None:
    pq.write_table(pa.table({"pin_id": ["1", "2"]}), tmp_path / "pins.parquet")
    # integer pin ids in the engagements must match string ids in pins
    write_jsonl([{"query": "a", "pin_id": 1, "action": "click"}] * 3
                + [{"query": "b", "pin_id": 1, "action": "click"}] * 2
                + [{"query": "c", "pin_id": 2, "action": "impression"}] * 9, tmp_path / "engagements.jsonl")
    boards, queries = pandas_aggregate(tmp_path, BuildSettings())
    assert boards.empty
    assert as_dict(queries, "queries") == {"1": ["a"]}


def test_integer_ids_with_nulls_in_parquet(tmp_path: Path) -> None:
    pq.write_table(pa.table({"pin_id": pa.array([1001, 1002], pa.int64())}), tmp_path / "pins.parquet")
    pq.write_table(pa.table({"board_id": ["b1"], "title": ["Cakes"]}), tmp_path / "boards.parquet")
    # a null in an integer column makes pandas read it as float: 1001.0 must still match '1001'
    pq.write_table(pa.table({"pin_id": pa.array([1001, None, 1002], pa.int64()), "board_id": ["b1", "b1", "b1"]}),
                   tmp_path / "saves.parquet")
    boards, _ = pandas_aggregate(tmp_path, BuildSettings())
    assert as_dict(boards, "boards") == {"1001": ["cakes"], "1002": ["cakes"]}


def test_parts_folder_and_cli(tmp_path: Path, small: Path) -> None:
    # the engagements as a folder of Parquet parts, as bench/make_synthetic.py writes them
    ev = pd.read_json(small / "engagements.jsonl", lines=True)
    (small / "engagements.jsonl").unlink()
    (small / "engagements").mkdir()
    half = len(ev) // 2
    for i, part in enumerate((ev.iloc[:half], ev.iloc[half:])):
        pq.write_table(pa.Table.from_pandas(part, preserve_index=False), small / "engagements" / f"part-{i:05d}.parquet")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "pandas_baseline.py"), "--input", str(small), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    q = pq.read_table(out / "queries.parquet").to_pylist()
    assert {r["pin_id"]: r["queries"] for r in q} == {"p1": ["brownies", "chocolate cake", "cake"], "p2": ["scones"]}
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) >= {"read", "boards", "queries", "aggregate", "total"}


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no pins table"):
        pandas_aggregate(tmp_path, BuildSettings())
    pq.write_table(pa.table({"id": ["p1"]}), tmp_path / "pins.parquet")
    with pytest.raises(InputError, match="pin_id"):
        pandas_aggregate(tmp_path, BuildSettings())
    pq.write_table(pa.table({"pin_id": ["p1"]}), tmp_path / "pins.parquet")
    write_jsonl([{"query": "a", "pin_id": "p1"}], tmp_path / "engagements.jsonl")  # no action column
    with pytest.raises(InputError, match="action"):
        pandas_aggregate(tmp_path, BuildSettings())


def test_hostile_fixtures_do_not_crash() -> None:
    boards, queries = pandas_aggregate(ROOT / "fixtures" / "hostile", BuildSettings())
    b = as_dict(boards, "boards")
    # integer pin ids in saves.parquet match pins '1001'; 'Cakes' + 'CAKES' boards merge (3 saves)
    assert b["1001"][0] == "cakes"
    # titles that are only an e-mail / phone / URL are scrubbed away
    assert not {"anna@example.com", "+44 20 7946 0958"} & set(b.get("1002", []))
    q = as_dict(queries, "queries")
    # 'CLICK ' normalises: 'chocolate cake' has 4 users; e-mail/phone/URL-only queries are gone, and
    # the planted ones keep their words only ("call 07946 095811 cake" is "call cake")
    assert "chocolate cake" in q["1001"] and "call cake" in q["1001"]
    assert all("@" not in x and "4111" not in x for xs in q.values() for x in xs)


# -- the synthetic generator the benchmark feeds both sides with --------------------------------

def run_synthetic(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(out),
                           "--pins", "3000", "--saves", "12000", "--engagements", "40000", "--chunk", "15000", *extra],
                          capture_output=True, text=True, timeout=120)


def test_make_synthetic_deterministic_and_shaped(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        proc = run_synthetic(out)
        assert proc.returncode == 0, proc.stderr
    files = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert [str(f) for f in files] == ["boards.parquet", "engagements/part-00000.parquet", "engagements/part-00001.parquet",
                                       "engagements/part-00002.parquet", "pins.parquet", "saves.parquet"]
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    import polars as pl

    pins = pl.read_parquet(a / "pins.parquet")
    assert pins.columns == ["pin_id", "title", "description", "image", "link", "created_at"]
    assert pins.height == 3000 and pins["pin_id"].n_unique() == 3000
    # ~40% repins share an earlier pin's image, title and description
    repins = pins.height - pins["image"].n_unique()
    assert 0.35 * pins.height < repins < 0.45 * pins.height
    assert pins.group_by("image").agg(pl.col("title").n_unique())["title"].max() == 1
    ev = pl.read_parquet(a / "engagements")
    assert ev.height == 40000
    assert ev.columns == ["query", "pin_id", "action", "user_id", "ts", "country", "locale"]
    assert set(ev["pin_id"].unique()) <= set(pins["pin_id"])
    assert ev["country"].n_unique() == 10  # ten languages / markets
    saves = pl.read_parquet(a / "saves.parquet")
    boards = pl.read_parquet(a / "boards.parquet")
    assert saves.height == 12000 and set(saves["board_id"].unique()) <= set(boards["board_id"])
    # both aggregations find something on it
    b_df, q_df = pandas_aggregate(a, BuildSettings())
    assert len(b_df) > 1000 and len(q_df) > 100


def test_make_synthetic_bad_args(tmp_path: Path) -> None:
    proc = run_synthetic(tmp_path / "x", "--pins", "0")
    assert proc.returncode != 0 and "must be >= 1" in proc.stderr
    proc = run_synthetic(tmp_path / "y", "--tail-share", "1.5")
    assert proc.returncode != 0 and "--tail-share must be in [0, 1)" in proc.stderr


def test_make_synthetic_long_tail(tmp_path: Path) -> None:
    """The benchmark's query log has a real log's shape: >= 15% of events bring a distinct raw query
    (3M in 20M), >= 40% of distinct queries are seen once, and a Zipf head carries most traffic."""
    import polars as pl

    proc = run_synthetic(tmp_path / "tail", "--engagements", "60000", "--chunk", "25000")
    assert proc.returncode == 0, proc.stderr
    ev = pl.read_parquet(tmp_path / "tail" / "engagements")
    assert ev.height == 60000
    per_query = ev.group_by("query").len().sort("len", descending=True)["len"]
    assert per_query.len() >= 0.15 * ev.height
    assert (per_query == 1).sum() >= 0.40 * per_query.len()
    head = per_query.head(max(1, per_query.len() // 1000))  # the top 0.1% of distinct queries
    assert head.sum() >= 0.25 * ev.height
    assert per_query[0] > 2 * per_query[9] > 0 and per_query[9] > 2 * per_query[99]
    # tail queries read like refined head queries, not random bytes
    assert ev["query"].str.split(" ").list.len().max() <= 12
    # --tail-share 0 is the head alone: a few thousand distinct queries
    proc = run_synthetic(tmp_path / "head", "--engagements", "60000", "--chunk", "25000", "--tail-share", "0")
    assert proc.returncode == 0, proc.stderr
    assert pl.read_parquet(tmp_path / "head" / "engagements")["query"].n_unique() < 0.1 * 60000


def test_bench_build_end_to_end_agrees_with_build(tmp_path: Path) -> None:
    """The benchmark on a tiny data set: the whole build, a 2-shard build, pandas and the floor;
    builds agree with each other and with pandas, list per pin."""
    results = tmp_path / "build.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_build.py"), "--pins", "1500", "--saves", "6000",
                           "--engagements", "30000", "--shards", "2", "--skip-ray", "--data", str(tmp_path / "data"),
                           "--results", str(results)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    res = json.loads(results.read_text())
    assert res["data"]["tail_share"] == 0.25
    assert res["agreement"]["pins"] == 1500
    assert res["agreement"]["boards"]["mismatches"] == 0
    assert res["agreement"]["queries"]["mismatches"] == 0
    assert res["agreement"]["boards"]["pins_with_values_build"] > 500
    assert res["agreement"]["queries"]["pins_with_values_build"] > 50
    assert res["shards"]["same_features_as_whole"] == {"pins": 1500, "pins_other": 1500, "mismatches": 0}
    assert {"aggregate", "language", "read"} <= set(res["whole"]["stages_s"])
    assert {"partition", "shards", "assemble", "queries"} <= set(res["shards"]["stages_s"])
    assert 0 < res["whole"]["peak_rss_gib"] < 8 and 0 < res["shards"]["largest_worker_rss_gib"] < res["shards"]["peak_rss_gib"]
    assert res["floor"]["query_pin_groups"] > 0 and res["floor"]["pin_board_groups"] > 0
    assert set(res["goals"]) == {"whole_under_50_s", "whole_peak_under_4_gib", "sharded_workers_under_1_5_gib",
                                 "aggregate_within_3x_of_floor", "aggregate_10x_faster_than_pandas"}
    assert "ray" not in res
    # the aggregate stage alone works on the same validated rows: the same pins get boards and queries
    alone = res["aggregate_alone"]
    assert alone["pins_with_boards"] == res["agreement"]["boards"]["pins_with_values_build"]
    assert alone["pins_with_queries"] == res["agreement"]["queries"]["pins_with_values_build"]
    assert alone["total_s"] > 0 and len(alone["spread_s"]) == 2
    assert res["ratios"]["aggregate_alone_over_floor"] == pytest.approx(alone["total_s"] / res["floor"]["total_s"], rel=0.03)


@pytest.mark.parametrize("name", ["input", "hostile"])
def test_same_lists_as_the_build_on_fixtures(tmp_path: Path, name: str) -> None:
    """DuckDB (pinfeatures.build.run) and pandas agree pin by pin on the committed fixtures, hostile ones included."""
    from pinfeatures.build.run import run_build

    out = tmp_path / "build"
    run_build(BuildSettings(input=str(ROOT / "fixtures" / name), out=str(out), caption=CaptionSettings(cache=str(tmp_path / "cache")), quiet=True))
    feats = pq.read_table(out / "features.parquet", columns=["pin_id", "boards", "queries"]).to_pylist()
    boards, queries = pandas_aggregate(ROOT / "fixtures" / name, BuildSettings())
    b, q = as_dict(boards, "boards"), as_dict(queries, "queries")
    assert {r["pin_id"]: list(r["boards"]) for r in feats} == {r["pin_id"]: b.get(r["pin_id"], []) for r in feats}
    assert {r["pin_id"]: list(r["queries"]) for r in feats} == {r["pin_id"]: q.get(r["pin_id"], []) for r in feats}
    assert sum(1 for r in feats if r["queries"]) >= 2
