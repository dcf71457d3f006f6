"""Privacy in the build: honest user counts, the events fallback and --require-users, and reject
records that hold no user id, no below-k query and no unscrubbed line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import polars as pl
import pytest
from conftest import REPO, build, small_tables, write_inputs

from pinfeatures.build.aggregate import aggregate
from pinfeatures.build.read import read_table
from pinfeatures.build.validate import USER_ID_WITHHELD, canonical_user_id, canonical_user_ids, validate_tables
from pinfeatures.contracts import DEFAULT_ACTION_WEIGHTS
from pinfeatures.errors import InputError

WEIGHTS = DEFAULT_ACTION_WEIGHTS


def test_canonical_user_id():
    raw = pl.Series("user_id", ["7", "7.0", " 7 ", "7.00", "-3.0", "", "   ", None, "u1", " u1", "7.5", "007", "1e3"])
    got = pl.select(canonical_user_id(pl.lit(raw))).to_series().to_list()
    assert got == ["7", "7", "7", "7", "-3", None, None, None, "u1", "u1", "7.5", "007", "1e3"]
    # the column form changes only values that may change, with the same answers
    more = pl.Series("user_id", ["7.", "+7.0", "\t7\n", "7.0 ", "a b", "u.1", "\u00a07", "7\u2003", "x"])
    both = pl.concat([raw, more])
    assert canonical_user_ids(both).to_list() == got + ["7", "+7", "7", "7", "a b", "u.1", "7", "7", "x"]
    assert canonical_user_ids(both).to_list() == pl.select(canonical_user_id(pl.lit(both))).to_series().to_list()


def _engagements(user_ids: list, query: str = "cake", pin: str = "p1") -> pl.DataFrame:
    return pl.DataFrame({"query": [query] * len(user_ids), "pin_id": [pin] * len(user_ids), "action": ["click"] * len(user_ids),
                         "user_id": pl.Series(user_ids, dtype=pl.Utf8)})


def _users_of(tmp_path, user_ids: list, fmt: str = "jsonl", **kwargs):
    """Read engagements written in `fmt`, validate, aggregate with k=2: (kept pairs, stats)."""
    t = small_tables()
    t["engagements"] = _engagements(user_ids)
    folder = write_inputs(tmp_path / "in", t, fmt)
    read = {name: read_table(next(folder.glob(f"{name}*")), name) for name in t}
    valid = validate_tables(read)
    agg = aggregate(valid.saves, valid.boards, valid.engagements, action_weights=WEIGHTS, query_min_users=2, **kwargs)
    return agg.query_pins, agg.stats


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_one_user_written_three_ways_is_one_user(tmp_path, fmt):
    kept, stats = _users_of(tmp_path, ["7", "7.0", " 7 "], fmt)
    assert stats["threshold_unit"] == "users"
    assert kept.height == 0  # one user, k = 2
    kept, _ = _users_of(tmp_path / "b", ["7", "7.0", " 8 "], fmt)
    assert kept.select("query", "pin_id", "users").rows() == [("cake", "p1", 2)]


def test_jsonl_numbers_7_and_7_point_0_are_one_user(tmp_path):
    t = small_tables()
    folder = write_inputs(tmp_path / "in", {k: v for k, v in t.items() if k != "engagements"}, "parquet")
    lines = [{"query": "cake", "pin_id": "p1", "action": "click", "user_id": u} for u in (7, 7.0, " 7 ")]
    (folder / "engagements.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    read = {name: read_table(next(folder.glob(f"{name}.*")), name) for name in ("pins", "boards", "saves", "engagements")}
    valid = validate_tables(read)
    assert valid.engagements.get_column("user_id").to_list() == ["7", "7", "7"]


def test_empty_and_blank_user_ids_are_no_user(tmp_path):
    kept, stats = _users_of(tmp_path, ["", "  ", "u1"])
    assert stats["threshold_unit"] == "users"
    assert kept.height == 0  # u1 alone: blanks are not users
    kept, _ = _users_of(tmp_path / "b", ["", "  ", "u1", "u2"])
    assert kept.get_column("users").to_list() == [2]


def test_all_null_user_ids_count_events_with_a_warning(tmp_path, capfd):
    kept, stats = _users_of(tmp_path, ["", None, "   "])
    err = capfd.readouterr().err
    assert "pinfeatures: warning: engagements have no user_id" in err and "counts engaged events" in err
    assert stats["threshold_unit"] == "events"
    assert kept.select("query", "pin_id", "engaged_events").rows() == [("cake", "p1", 3)]


def test_require_users_makes_it_an_error(tmp_path):
    with pytest.raises(InputError, match="column 'user_id'.*no user_id.*require_users"):
        _users_of(tmp_path, ["", None, "   "], require_users=True)
    kept, _ = _users_of(tmp_path / "b", ["u1", "u2"], require_users=True)  # users present: fine
    assert kept.height == 1


def test_require_users_from_the_command_line_and_toml_exits_2(tmp_path):
    t = small_tables()
    t["engagements"] = t["engagements"].drop("user_id")
    folder = write_inputs(tmp_path / "in", t, "parquet")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    base = [sys.executable, str(REPO / "cli.py"), "build", "--input", str(folder), "--quiet", "--cache", str(tmp_path / "c")]
    proc = subprocess.run(base + ["--out", str(tmp_path / "o1"), "--require-users"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pinfeatures: error: ") and "user_id" in lines[0], proc.stderr
    toml = tmp_path / "c.toml"
    toml.write_text("require_users = true\n", encoding="utf-8")
    proc = subprocess.run(base + ["--out", str(tmp_path / "o2"), "--config", str(toml)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "require_users" in proc.stderr
    proc = subprocess.run(base + ["--out", str(tmp_path / "o3")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "pinfeatures: warning: engagements have no user_id" in proc.stderr  # shown even with --quiet


@pytest.mark.parametrize("shards", [0, 2])
def test_no_user_ids_warning_goes_to_the_manifest_and_strict_stops_on_it(tmp_path, capfd, shards):
    from click.testing import CliRunner

    from pinfeatures.cli import cli

    t = small_tables()
    t["engagements"] = t["engagements"].with_columns(pl.lit(None, pl.Utf8).alias("user_id"))
    folder = write_inputs(tmp_path / "in", t, "parquet")
    out = tmp_path / "out"
    manifest = build(out, input=str(folder), shards=shards)
    warning = ("engagements have no user_id (the column is missing or every value is null or blank): the privacy "
               "threshold k=3 counts engaged events, not distinct users; --require-users makes this an error")
    assert manifest["warnings"] == [warning]
    assert capfd.readouterr().err.count("warning: engagements have no user_id") == 1  # on stderr once
    before = (out / "manifest.json").read_text()
    result = CliRunner().invoke(cli, ["build", "--input", str(folder), "--out", str(out), "--shards", str(shards), "--strict",
                                      "--quiet", "--cache", str(tmp_path / "c")])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    # like a reading warning under --strict: the warning as it happened, then the one-line error
    assert result.stderr.splitlines() == [f"pinfeatures: warning: {warning}", f"pinfeatures: error: --strict: {warning}; nothing was committed"]
    assert (out / "manifest.json").read_text() == before  # the previous build, as it was
    # users present: no warning, and --strict builds
    clean = write_inputs(tmp_path / "in2", small_tables(), "parquet")
    assert build(tmp_path / "out2", input=str(clean), shards=shards, strict=True)["warnings"] == []


def _reject_build(tmp_path) -> tuple[pl.DataFrame, dict]:
    """A build whose rejected rows carry user ids, a query that passed k and one that did not, and
    unparsable lines holding personal data."""
    t = small_tables()
    eng = t["engagements"].with_columns(pl.col("user_id").cast(pl.Utf8))
    extra = pl.DataFrame({
        "query": ["chocolate cake", "john smith hiv test", "Birthday Cake call 415-555-0123", "cake"],
        "pin_id": ["p1", "p1", "p1", "p404"],
        "action": ["purchase", "purchase", "purchase", "click"],
        "user_id": ["u-secret-1", "u-secret-2", "u-secret-3", "u-secret-4"],
    })
    t["engagements"] = pl.concat([eng, extra])
    t["saves"] = pl.concat([t["saves"], pl.DataFrame({"pin_id": ["p404"], "board_id": ["b1"], "user_id": ["u-secret-5"]})])
    folder = write_inputs(tmp_path / "in", {k: v for k, v in t.items() if k not in ("engagements", "boards")}, "parquet")
    lines = [json.dumps(r) for r in t["engagements"].to_dicts()]
    lines.append('{"query": "anna@example.com u-secret-6", "pin_id": "p1", "action": "click", "user_id": "u-secret-6"')  # malformed
    (folder / "engagements.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    boards = "board_id,title\nb1,Cakes\nb2,  CAKES \nb3,Garden\nb4,Desserts\nb5,call 07946 095811,extra field\n"
    (folder / "boards.csv").write_text(boards, encoding="utf-8")
    out = tmp_path / "out"
    manifest = build(out, input=str(folder), min_users=3)
    return pl.read_parquet(out / "rejects.parquet"), manifest


def test_reject_records_hold_no_user_id_no_below_k_query_no_raw_secret(tmp_path):
    rejects, manifest = _reject_build(tmp_path)
    everything = "\n".join(str(v) for row in rejects.iter_rows() for v in row)
    for secret in ("u-secret", "john smith", "hiv", "415", "555-0123", "anna", "07946", "095811"):
        assert secret not in everything, secret
    eng = {r["row"]: r for r in rejects.filter(pl.col("table") == "engagements").iter_rows(named=True)}
    records = {row: (json.loads(r["record"]) if r["record"] else None) for row, r in eng.items()}
    # the unknown action on a (query, pin) that passed k keeps its query, folded and scrubbed
    assert records[14] == {"query": "chocolate cake", "pin_id": "p1", "action": "purchase"}
    # ... and on one that did not (one user), or whose query scrubs to one that did not, loses it
    assert records[15] == {"query": None, "pin_id": "p1", "action": "purchase"}
    assert records[16] == {"query": None, "pin_id": "p1", "action": "purchase"}
    assert records[17] == {"query": None, "pin_id": "p404", "action": "click"}
    assert eng[17]["reason"] == "unknown_pin"
    # a malformed engagements line keeps reason, file and row, no record
    assert eng[18]["reason"] == "malformed_json" and eng[18]["record"] is None and eng[18]["file"].endswith("engagements.jsonl")
    saves = rejects.filter(pl.col("table") == "saves").to_dicts()
    assert [json.loads(r["record"]) for r in saves] == [{"pin_id": "p404", "board_id": "b1"}]
    boards = rejects.filter(pl.col("table") == "boards").to_dicts()
    assert [(r["row"], r["reason"], r["record"]) for r in boards] == [(6, "malformed_csv", '["b5", "call ", "extra field"]')]  # line 6 of boards.csv (header = line 1)
    assert manifest["rejects"]["engagements"] == {"malformed_json": 1, "unknown_action": 3, "unknown_pin": 1}


def test_a_bad_user_id_is_a_reject_that_withholds_its_value(tmp_path):
    t = small_tables()
    folder = write_inputs(tmp_path / "in", {k: v for k, v in t.items() if k != "engagements"}, "parquet")
    (folder / "engagements.jsonl").write_text(
        '{"query": "cake", "pin_id": "p1", "action": "click", "user_id": "u1"}\n'
        '{"query": "cake", "pin_id": "p1", "action": "click", "user_id": {"secret": "u-secret-7"}}\n'
        '{"query": "cake", "pin_id": "p1", "action": "click", "user_id": true}\n'
        '{"query": "cake", "pin_id": "p1", "action": "click", "user_id": 7.5}\n', encoding="utf-8")
    read = {name: read_table(next(folder.glob(f"{name}.*")), name) for name in ("pins", "boards", "saves", "engagements")}
    rejects = validate_tables(read).rejects.filter(pl.col("table") == "engagements")
    # a JSON boolean or a fractional number is no user id: the row is a reject (read.py), not user "true"
    assert rejects.sort("row").select("row", "column", "reason", "detail", "record").rows() == [
        (2, "user_id", "bad_value", USER_ID_WITHHELD, None),
        (3, "user_id", "bad_value", USER_ID_WITHHELD, None),
        (4, "user_id", "bad_value", USER_ID_WITHHELD, None),
    ]
