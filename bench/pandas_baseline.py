"""The build's two aggregations written the way a careful pandas user would: the benchmark's baseline.

    python bench/pandas_baseline.py --input bench/data/1m --out /tmp/pandas_out [--config F.toml]

Writes OUT/boards.parquet (pin_id, boards: list[str]), OUT/queries.parquet (pin_id, queries:
list[str]) and OUT/timings.json ({read, boards, queries, aggregate, total} seconds).

Same rules as the DuckDB aggregation in sql/ (pinfeatures.build.aggregate):

* board titles per pin: normalise titles with `pinfeatures.build.scrub.normalize_phrases` (on the
  unique values), drop empty ones, count saves per (pin, normalised title), rank by count desc
  then title asc, keep the top `cfg.board_top_k`.
* top queries per pin: normalise queries the same way, drop empty ones; score = sum of
  `cfg.action_weights` over the pair's events; keep (query, pin) pairs with at least one
  non-impression event and at least `cfg.min_users` distinct users among the
  non-impression events (without a user_id column: that many non-impression events); rank by
  score desc then query asc, keep the top `cfg.query_top_k`.
* saves/engagements whose pin_id (or board_id) is not a valid id of pins (boards), and
  engagements whose action (trimmed, lower-cased) is not a known action, are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere in the checkout
    sys.path.insert(0, str(ROOT))

from pinfeatures.build.scrub import normalize_phrases  # noqa: E402
from pinfeatures.build.settings import BuildSettings  # noqa: E402
from pinfeatures.build.validate import canonical_user_id  # noqa: E402
from pinfeatures.errors import InputError  # noqa: E402
from pinfeatures.settings import load_settings  # noqa: E402


def find_table(input_dir: str | Path, name: str) -> Path | None:
    """`name`.parquet, `name`/ (folder of Parquet parts), `name`.csv or `name`.jsonl in input_dir; None if absent."""
    d = Path(input_dir)
    for cand in (d / f"{name}.parquet", d / name, d / f"{name}.csv", d / f"{name}.jsonl"):
        if cand.exists():
            return cand
    return None


def read_table(path: Path, columns: list[str], optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read the wanted columns (those of `optional` that exist too); id columns come back as strings."""
    if path.suffix == ".csv":
        # a record with more fields than the header is skipped, as the build rejects it (malformed_csv)
        df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], on_bad_lines="skip")
    elif path.suffix == ".jsonl":
        try:
            df = pd.read_json(path, lines=True, dtype=False)
        except ValueError:  # a malformed line: skip it, as the build rejects it (slower, line by line)
            df = pd.DataFrame(_json_objects(path))
    else:
        import pyarrow.parquet as pq

        names = pq.read_schema(next(iter(sorted(path.glob("*.parquet")))) if path.is_dir() else path).names
        df = pd.read_parquet(path, columns=[c for c in columns + list(optional) if c in names])
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {missing}", file=str(path))
    return df[[c for c in columns + list(optional) if c in df.columns]]


def _json_objects(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
            json.dumps(obj, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape: a reject in the build
        except (ValueError, UnicodeEncodeError):
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def user_ids(s: pd.Series) -> pd.Series:
    """as_id, then the build's canonical user id (validate.canonical_user_id: '7.0' is '7', blank is no user)."""
    ids = pl.Series("user_id", [None if pd.isna(v) else str(v) for v in as_id(s)], dtype=pl.Utf8)
    return pd.Series(pl.select(canonical_user_id(pl.lit(ids))).to_series().to_list(), index=s.index, dtype="string")


def as_id(s: pd.Series) -> pd.Series:
    """Ids compare as strings: cast (an integer id 7 is '7'); blank becomes missing (as validate.py rejects it)."""
    if pd.api.types.is_float_dtype(s):
        # an integer column with nulls arrives as float: 1001.0 must read '1001'
        try:
            s = s.astype("Int64")
        except (TypeError, ValueError):
            pass
    s = s.astype("string")
    return s.mask(s.str.strip() == "")


def normalize_unique(s: pd.Series) -> pd.Series:
    """normalize_phrases over the distinct values only, mapped back; '' becomes missing."""
    uniq = list(s.dropna().unique())
    mapping = dict(zip(uniq, normalize_phrases(uniq).to_list()))
    out = s.map(mapping).astype("string")
    return out.mask(out == "")


def top_k_lists(df: pd.DataFrame, value: str, by: list[str], ascending: list[bool], k: int, out: str) -> pd.DataFrame:
    """Sort, keep the first k rows per pin, collect `value` into a list per pin (in rank order)."""
    df = df.sort_values(["pin_id", *by], ascending=[True, *ascending], kind="stable")
    df = df.groupby("pin_id", sort=False).head(k)
    res = df.groupby("pin_id", sort=True)[value].agg(list).rename(out).reset_index()
    res["pin_id"] = res["pin_id"].astype(str)
    res[out] = res[out].map(lambda xs: [str(x) for x in xs])
    return res


def pandas_aggregate(input_dir: str | Path, cfg: Any = None, timings: dict | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Board titles and top queries per pin from an input folder.

    In: a folder with pins, boards, saves and engagements tables (Parquet file or parts folder,
    CSV, JSONL); `cfg` a BuildSettings (or anything with board_top_k, query_top_k,
    min_users, action_weights); None: defaults.
    Out: (boards_df[pin_id, boards: list[str]], queries_df[pin_id, queries: list[str]]), one row per
    pin that has at least one board title (query), sorted by pin_id. `timings`, if given,
    receives seconds for read / boards / queries.
    """
    cfg = cfg if cfg is not None else BuildSettings()
    t = timings if timings is not None else {}
    t0 = time.perf_counter()
    paths = {}
    for name in ("pins", "boards", "saves", "engagements"):
        paths[name] = find_table(input_dir, name)
    if paths["pins"] is None:
        raise InputError("no pins table (pins.parquet, pins/, pins.csv or pins.jsonl)", file=str(input_dir))
    pins = read_table(paths["pins"], ["pin_id"])
    pin_ids = pd.Index(as_id(pins["pin_id"]).dropna().unique())
    frames = {}
    if paths["boards"] is not None and paths["saves"] is not None:
        frames["boards"] = read_table(paths["boards"], ["board_id", "title"])
        frames["saves"] = read_table(paths["saves"], ["pin_id", "board_id"])
    if paths["engagements"] is not None:
        frames["engagements"] = read_table(paths["engagements"], ["query", "pin_id", "action"], optional=("user_id",))
    t["read"] = time.perf_counter() - t0

    # -- board titles per pin
    t1 = time.perf_counter()
    if "saves" in frames:
        boards = frames["boards"].assign(board_id=lambda d: as_id(d["board_id"]))
        boards = boards.dropna(subset=["board_id"]).drop_duplicates("board_id", keep="first")
        boards["title"] = normalize_unique(boards["title"].astype("string"))
        saves = frames["saves"].assign(pin_id=lambda d: as_id(d["pin_id"]), board_id=lambda d: as_id(d["board_id"]))
        saves = saves[saves["pin_id"].isin(pin_ids)]
        saves = saves.merge(boards[["board_id", "title"]], on="board_id", how="inner").dropna(subset=["title"])
        counts = saves.groupby(["pin_id", "title"], sort=False).size().rename("n").reset_index()
        boards_df = top_k_lists(counts, "title", ["n", "title"], [False, True], cfg.board_top_k, "boards")
    else:
        boards_df = pd.DataFrame({"pin_id": pd.Series(dtype=str), "boards": pd.Series(dtype=object)})
    t["boards"] = time.perf_counter() - t1

    # -- top queries per pin
    t2 = time.perf_counter()
    if "engagements" in frames:
        ev = frames["engagements"]
        ev = ev.assign(pin_id=as_id(ev["pin_id"]))
        ev = ev[ev["pin_id"].isin(pin_ids)]
        # like the build: the actions action_weights names are the known ones, the rest is left out
        weights = {a: float(w) for a, w in cfg.action_weights.items()}
        action = normalize_actions(ev["action"])
        ev = ev.assign(action=action)[action.isin(list(weights))]
        ev = ev.assign(query=normalize_unique(ev["query"].astype("string"))).dropna(subset=["query"])
        engaged = ev["action"] != "impression"
        cols = {"score": ev["action"].map(weights).astype("float64"), "engaged": engaged}
        # a user_id column that is entirely empty counts as absent (as in pinfeatures.build.aggregate)
        users = user_ids(ev["user_id"]) if "user_id" in ev.columns else None
        has_users = users is not None and bool(users.notna().any())
        if has_users:
            cols["eng_user"] = users.where(engaged)
        ev = ev[["pin_id", "query"]].assign(**cols)
        agg = {"score": ("score", "sum"), "engaged": ("engaged", "sum")}
        if has_users:
            agg["users"] = ("eng_user", "nunique")
        pairs = ev.groupby(["pin_id", "query"], sort=False).agg(**agg).reset_index()
        need = pairs["users"] if has_users else pairs["engaged"]
        pairs = pairs[(pairs["engaged"] >= 1) & (need >= cfg.min_users)]
        queries_df = top_k_lists(pairs, "query", ["score", "query"], [False, True], cfg.query_top_k, "queries")
    else:
        queries_df = pd.DataFrame({"pin_id": pd.Series(dtype=str), "queries": pd.Series(dtype=object)})
    t["queries"] = time.perf_counter() - t2
    t["aggregate"] = t["boards"] + t["queries"]
    t["total"] = time.perf_counter() - t0
    return boards_df, queries_df


def normalize_actions(s: pd.Series) -> pd.Series:
    """'CLICK ' -> 'click' (on the few distinct values); missing stays missing."""
    s = s.astype("string")
    mapping = {v: v.strip().lower() for v in s.dropna().unique()}
    return s.map(mapping)


def write_lists(df: pd.DataFrame, col: str, path: Path) -> None:
    """Write (pin_id, list[str]) with pyarrow directly: plain Arrow types, readable by any reader."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"pin_id": pa.array(df["pin_id"].tolist(), pa.string()),
                      col: pa.array(df[col].tolist(), pa.list_(pa.string()))})
    pq.write_table(table, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="pandas baseline of the build's board/query aggregations")
    ap.add_argument("--input", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default=None, help="TOML config (board_top_k, query_top_k, min_users, action_weights)")
    args = ap.parse_args(argv)
    cfg = load_settings(args.config, {"": BuildSettings})[""]
    timings: dict[str, float] = {}
    boards_df, queries_df = pandas_aggregate(args.input, cfg, timings)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_lists(boards_df, "boards", out / "boards.parquet")
    write_lists(queries_df, "queries", out / "queries.parquet")
    (out / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in timings.items()}, indent=2) + "\n")
    print(json.dumps({"pins_with_boards": len(boards_df), "pins_with_queries": len(queries_df),
                      **{k: round(v, 3) for k, v in timings.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
