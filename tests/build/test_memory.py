"""The build's memory_limit: DuckDB's bound in the aggregate stage, spilling inside the build's own folders.

A build under a tiny limit gives exactly the rows of an unbounded one; the limit reaches DuckDB
(read back from the connection into the manifest); bad values stop the command before any read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from pinfeatures.build.aggregate import _bounded_connection
from pinfeatures.build.settings import BuildSettings
from pinfeatures.cli import cli
from pinfeatures.errors import ConfigError
from pinfeatures.settings import memory_bytes, physical_memory
from pinfeatures.sqlrun import connect

from tests.build.test_shard import assert_same_rows, build, read_output

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024**2


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated 20k-pin set with the long tail: DuckDB spills it under 40-48 MiB (not under
    52 MiB), with room below for what it cannot spill (at 36 MiB the queries table's ordered
    lists and distinct counts sometimes run out)."""
    data = tmp_path_factory.mktemp("memory") / "data"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(data), "--pins", "20000",
                           "--saves", "40000", "--engagements", "480000", "--chunk", "50000"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return data


@pytest.mark.parametrize("text, expected", [
    ("2GiB", 2 * 1024**3), ("512MB", 512 * 1000**2), ("1.5 GB", 1_500_000_000), ("64mib", 64 * MiB), ("100000000B", 100_000_000),
    ("25%", 1000), ("100%", 4000), (".5KiB", 512),
])
def test_memory_amounts(text: str, expected: int) -> None:
    assert memory_bytes("memory_limit", text, total=4000) == expected


def test_a_share_is_of_this_machine() -> None:
    assert BuildSettings(memory_limit="10%").memory_limit_bytes == physical_memory() // 10
    assert BuildSettings().memory_limit == "10%"  # the default


@pytest.mark.parametrize("value, says", [
    ("lots", "memory_limit must be an amount with a unit"), ("2", "memory_limit must be an amount with a unit"),
    ("2 parsecs", "memory_limit must be an amount with a unit"), ("-1GB", "memory_limit must be an amount with a unit"),
    ("0%", "memory_limit must be a share between 0% and 100%"), ("150%", "memory_limit must be a share between 0% and 100%"),
    ("1MB", "memory_limit must be at least 32MiB"), ("", "memory_limit must be an amount with a unit"),
])
def test_bad_values_exit_2_with_one_line_before_any_read(tmp_path: Path, value: str, says: str) -> None:
    # the input folder does not exist: the setting is refused before anything looks for it
    result = CliRunner().invoke(cli, ["build", "--input", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--memory-limit", value])
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_the_toml_key_wants_a_string(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("memory_limit = 2\n")
    result = CliRunner().invoke(cli, ["build", "--input", str(tmp_path / "absent"), "--out", str(tmp_path / "out"), "--config", str(config)])
    assert result.exit_code == 2 and result.stderr == "pinfeatures: error: memory_limit must be a string, got 2\n"
    config.write_text('memory_limit = "1GiB"\n')
    with pytest.raises(ConfigError, match="memory_limit must be an amount"):
        BuildSettings(memory_limit="1 GiB per shard")


def test_connect_hands_the_limit_and_folder_to_duckdb(tmp_path: Path) -> None:
    con = connect(threads=1, memory_limit=64 * MiB, temp_directory=tmp_path / "spill")
    try:
        got = con.sql("SELECT current_setting('memory_limit'), current_setting('temp_directory')").fetchall()[0]
    finally:
        con.close()
    assert got == ("64.0 MiB", str(tmp_path / "spill"))


def test_a_tiny_limit_spills_and_gives_the_same_rows(tmp_path: Path, generated: Path) -> None:
    m_free = build(generated, tmp_path / "free", tmp_path / "cache", memory_limit="50%")
    m_tiny = build(generated, tmp_path / "tiny", tmp_path / "cache", memory_limit="42MiB")
    for name in ("features", "texts", "rejects", "query_pins", "queries"):
        a, b = read_output(tmp_path / "free", name), read_output(tmp_path / "tiny", name)
        assert a.equals(b), name
    assert m_tiny["memory"] == {"memory_limit": "42MiB", "memory_limit_bytes": 42 * MiB, "workers": 1, "duckdb_memory_limit": "42.0 MiB", "spilled": True}
    assert m_free["memory"]["spilled"] is False and m_free["memory"]["memory_limit_bytes"] == physical_memory() // 2
    assert (m_tiny["counts"], m_tiny["privacy"]) == (m_free["counts"], m_free["privacy"])
    # the spill folder lived in the staging folder and is gone: nothing but the builds and their locks
    assert not [p for p in tmp_path.rglob("*") if "duckdb" in p.name]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [".free.lock", ".free.lock.json", ".tiny.lock", ".tiny.lock.json"]


def test_shards_divide_the_limit(tmp_path: Path, generated: Path) -> None:
    build(generated, tmp_path / "whole", tmp_path / "cache")
    m = build(generated, tmp_path / "sharded", tmp_path / "cache", shards=3, workers=2, memory_limit="96MiB")
    assert_same_rows(tmp_path / "whole", tmp_path / "sharded", 3)
    assert m["memory"] == {"memory_limit": "96MiB", "memory_limit_bytes": 96 * MiB, "workers": 2, "duckdb_memory_limit": "48.0 MiB",
                           "spilled": m["memory"]["spilled"]}
    assert not [p for p in tmp_path.rglob("*") if "duckdb" in p.name or ".shards-" in p.name]


def test_too_little_for_the_shards_at_once_stops_before_any_read(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", "--input", str(tmp_path / "absent"), "--out", str(tmp_path / "out"),
                                      "--memory-limit", "40MiB", "--shards", "4", "--workers", "2"])
    assert result.exit_code == 2
    assert result.stderr == "pinfeatures: error: memory_limit 40MiB over 2 shards at once is below 32MiB a shard: raise it or lower --workers\n"


def test_out_of_memory_is_one_line_and_leaves_nothing_behind(tmp_path: Path) -> None:
    # a list aggregate cannot spill: 40M integers under 33 MiB run DuckDB out of memory
    spill = tmp_path / "spill"
    with pytest.raises(ConfigError) as err:
        with _bounded_connection(1, 33 * 1024**2, spill) as con:
            held = con
            con.execute("SELECT list(i) FROM range(40000000) t(i)").fetchall()
    message = str(err.value)
    assert message.startswith("the aggregate stage needs more memory than memory_limit gives DuckDB (")
    assert message.endswith("): raise --memory-limit") and "\n" not in message
    assert not spill.exists()
    with pytest.raises(duckdb.ConnectionException):  # closed on the way out
        held.execute("SELECT 1")
