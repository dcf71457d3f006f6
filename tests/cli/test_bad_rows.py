"""Bad input rows through the real command line (a subprocess): each one is a reject naming its
table, file, line and reason, or a one-line error with exit 2; never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
from conftest import REPO, small_tables, write_inputs


def pinfeatures(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *args], capture_output=True, text=True, env=env, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("pinfeatures: error: "), proc.stderr
    return lines[0]


def inputs_without(tmp_path: Path, table: str) -> Path:
    return write_inputs(tmp_path / "in", {k: v for k, v in small_tables().items() if k != table})


def test_hostile_jsonl_lines_are_rejects_of_their_lines(tmp_path: Path):
    folder = inputs_without(tmp_path, "saves")
    lines = [
        '{"pin_id": "p1", "board_id": "b1", "user_id": "u1"}',
        "[" * 100_000 + "]" * 100_000,  # nested 100,000 deep
        '{"pin_id": "p1", "board_id": "b2\\ud800", "user_id": "u2"}',  # a lone surrogate
        "",
        '{"pin_id": 1.5, "board_id": "b1", "user_id": "u3"}',  # a fractional id
        '{"pin_id": "p2", "board_id": "b3", "user_id": "u1", "_row": 99, "_file": "x"}',  # reserved names
    ]
    (folder / "saves.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (f"pinfeatures: warning: {folder / 'saves.jsonl'}: column(s) '_file', '_row' ignored: the name is "
                           "reserved for pinfeatures' own bookkeeping (_column, _detail, _file, _key, _reason, _row)\n")
    rejects = pl.read_parquet(out / "rejects.parquet").filter(pl.col("table") == "saves")
    f = str(folder / "saves.jsonl")
    assert rejects.select("table", "file", "row", "column", "reason").rows() == [
        ("saves", f, 2, None, "malformed_json"),
        ("saves", f, 3, "board_id", "bad_value"),
        ("saves", f, 5, "pin_id", "bad_value"),
    ]
    assert rejects.get_column("detail").to_list() == [
        "nested too deeply",
        "a lone surrogate escape (\\ud800-\\udfff): not valid Unicode text",
        "'pin_id' is a fractional number (1.5), expected a string or integer id",
    ]
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["saves"] == {"read": 5, "valid": 2, "rejected": 3}


def test_fractional_parquet_id_is_a_reject_not_a_stop(tmp_path: Path):
    folder = inputs_without(tmp_path, "saves")
    pl.DataFrame({"pin_id": [1.0, 2.5], "board_id": ["b1", "b1"]}).write_parquet(folder / "saves.parquet")
    out = tmp_path / "out"
    proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    rejects = pl.read_parquet(out / "rejects.parquet").filter(pl.col("reason") == "bad_value")
    assert rejects.select("table", "file", "row", "column", "reason").rows() == [("saves", str(folder / "saves.parquet"), 2, "pin_id", "bad_value")]


def test_csv_not_in_utf8_warns_and_encoding_reads_it(tmp_path: Path):
    folder = inputs_without(tmp_path, "boards")
    path = folder / "boards.csv"
    path.write_bytes('board_id,title\nb1,"Crème\nbrûlée"\n,no id\nb2,Café\nb3,x\nb4,y\n'.encode("latin-1"))
    out = tmp_path / "out"
    proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (f"pinfeatures: warning: {path}: 4 byte(s) are not valid utf-8 and were read as U+FFFD; "
                           "if the file is in another encoding, give it with --encoding (e.g. latin-1, cp1252)\n")
    rejects = pl.read_parquet(out / "rejects.parquet")
    assert rejects.select("table", "file", "row", "column", "reason").rows() == [("boards", str(path), 4, "board_id", "null_id")]

    cfg = tmp_path / "cfg.toml"
    cfg.write_text('encoding = "latin-1"\n', encoding="utf-8")
    for flags in (["--encoding", "latin-1"], ["--config", str(cfg)]):
        proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet", *flags)
        assert (proc.returncode, proc.stderr) == (0, "")
        boards = pl.read_parquet(out / "features.parquet").filter(pl.col("pin_id") == "p1").get_column("boards")[0].to_list()
        assert "crème brûlée" in boards, boards


def test_unknown_encoding_is_a_one_line_error(tmp_path: Path):
    folder = write_inputs(tmp_path / "in", small_tables(), "csv")
    proc = pinfeatures("build", "--input", str(folder), "--out", str(tmp_path / "out"), "--encoding", "klingon")
    assert one_line_error(proc) == "pinfeatures: error: encoding 'klingon' is not a known text encoding (e.g. utf-8, latin-1, cp1252)"


def test_strict_stops_on_a_reading_warning(tmp_path: Path):
    folder = inputs_without(tmp_path, "boards")
    path = folder / "boards.csv"
    path.write_bytes("board_id,title\nb1,Café\nb2,x\nb3,y\nb4,z\n".encode("latin-1"))
    out = tmp_path / "out"
    warning = (f"{path}: 1 byte(s) are not valid utf-8 and were read as U+FFFD; "
               "if the file is in another encoding, give it with --encoding (e.g. latin-1, cp1252)")
    proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet", "--strict")
    assert proc.returncode == 2 and not (out / "manifest.json").exists()
    assert proc.stderr.splitlines() == [f"pinfeatures: warning: {warning}", f"pinfeatures: error: --strict: {warning}; nothing was committed"]
    proc = pinfeatures("build", "--input", str(folder), "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["warnings"] == [warning]
