"""pinfeatures.buildfolder: the writer (tables, parts, row hashes, manifest), the reader's checks
against the manifest (tampered folders are refused), the lock, and the recovery of a swap that a
killed build left half done. Real Parquet in tmp folders; the build-level behaviour (kill -9 of a
real build, concurrent builds, change sets) is in tests/build/test_commit.py."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time

from datetime import datetime, timezone
from pathlib import Path

import polars as pl
import pytest
from conftest import write_build

from pinfeatures import buildfolder
from pinfeatures.buildfolder import MANIFEST, BuildLocked, BuildWriter, TextLayout, file_sha256, open_build
from pinfeatures.contracts import SOURCES, Variant, empty_rejects
from pinfeatures.errors import ConfigError, InputError

FEATURES = pl.DataFrame(
    {
        "pin_id": ["p1", "p2", "p3"],
        "title": ["Red sofa", None, "Fish"],
        "description": ["cosy", "garden", None],
        "caption": [None, None, None],
        "boards": [["Living"], [], ["Dinner", "Fish"]],
        "queries": [[], ["garden"], []],
        "language": ["en", "en", "de"],
    }
)
TEXTS = pl.DataFrame(
    {
        "pin_id": ["p1", "p1", "p2", "p2", "p3", "p3"],
        "variant": ["title", "title+boards"] * 3,
        "text": ["Title: Red sofa", "Title: Red sofa\nBoards: Living", "", "", "Title: Fish", "Title: Fish\nBoards: Dinner | Fish"],
        "n_tokens": [3, 5, 0, 0, 2, 6],
    }
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make(out, **fields):
    return write_build(out, {"features": FEATURES, "texts": TEXTS}, **fields)


def test_writer_commits_a_verifiable_folder(tmp_path):
    out = make(tmp_path / "b")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["schema_version"] == buildfolder.SCHEMA_VERSION == 2
    assert manifest["outputs"] == {
        "rejects": {"path": "rejects.parquet", "rows": 0, "parts": 1},
        "features": {"path": "features.parquet", "rows": 3, "parts": 1},
        "texts": {"path": "texts.parquet", "rows": 6, "parts": 1},
    }
    for rel, entry in manifest["files"].items():
        data = (out / rel).read_bytes()
        assert entry == {"rows": pl.read_parquet(out / rel).height, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert manifest["changes"] == {"previous": None}
    # the staging folder is gone, the lock's files stay beside the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", ".b.lock.json", "b"]
    build = open_build(out)
    assert build.build_id == manifest["build_id"] and build.variants == (Variant(("title",)), Variant(("title", "boards")))
    assert build.layout == TextLayout()


def test_row_hashes(tmp_path):
    build = open_build(make(tmp_path / "b"))
    texts = build.read("texts")
    assert texts["text_sha256"].to_list() == [sha(t) for t in TEXTS["text"]]
    feats = build.read("features")
    # content_sha256 covers exactly the five sources: fields joined by U+001F, list items by U+001E, null as U+0000
    assert feats["content_sha256"][0] == sha("Red sofa\x1fcosy\x1f\x00\x1fLiving\x1f")
    assert feats["content_sha256"][2] == sha("Fish\x1f\x00\x1f\x00\x1fDinner\x1eFish\x1f")
    assert feats["content_sha256"].n_unique() == 3
    same_sources = FEATURES.with_columns(pl.lit("fr").alias("language"))
    assert buildfolder.with_row_hashes("features", same_sources)["content_sha256"].to_list() == feats["content_sha256"].to_list()


def test_parts_and_one_file_read_alike(tmp_path):
    with BuildWriter(tmp_path / "parts") as w:
        w.write_table("features", FEATURES.with_columns(pl.lit("ok").alias("caption_status"), pl.lit(None, pl.Utf8).alias("image_sha256")))
        w.add_part("texts", TEXTS.head(4).with_columns(pl.col("n_tokens").cast(pl.Int32), pl.lit(False).alias("truncated")))
        w.add_part("texts", TEXTS.tail(2).with_columns(pl.col("n_tokens").cast(pl.Int32), pl.lit(False).alias("truncated")))
        w.write_table("rejects", empty_rejects())
        with pytest.raises(ValueError, match="already written as one file"):
            w.add_part("features", FEATURES)
        with pytest.raises(ValueError, match="already written"):
            w.write_table("texts", TEXTS)
        manifest = w.commit({"variants": ["title", "title+boards"], "text_layout": TextLayout().to_dict()})
    assert manifest["outputs"]["texts"] == {"path": "texts/", "rows": 6, "parts": 2}
    assert sorted(f for f in manifest["files"] if f.startswith("texts/")) == ["texts/part-00000.parquet", "texts/part-00001.parquet"]
    one = open_build(make(tmp_path / "one")).read("texts")
    parts = open_build(tmp_path / "parts")
    assert parts.read("texts").equals(one)
    assert parts.describe("texts") == str(tmp_path / "parts" / "texts/")
    # a stray part that the manifest does not list is not read
    shutil.copy(tmp_path / "parts" / "texts" / "part-00000.parquet", tmp_path / "parts" / "texts" / "part-00002.parquet")
    assert open_build(tmp_path / "parts").read("texts").height == 6


def test_writer_refuses_bad_tables(tmp_path):
    with BuildWriter(tmp_path / "b") as w:
        with pytest.raises(ValueError, match="unknown build table 'stuff'"):
            w.write_table("stuff", FEATURES)
        with pytest.raises(InputError, match="texts.parquet, column 'n_tokens': required column is missing"):
            w.write_table("texts", TEXTS.drop("n_tokens"))
        with pytest.raises(InputError, match="features.parquet, column 'boards': expected List"):
            w.write_table("features", FEATURES.with_columns(pl.lit("x").alias("boards")))
        with pytest.raises(ValueError, match="without table"):
            w.commit({})
    assert not (tmp_path / "b").exists()  # nothing committed, the staging folder removed
    assert not list(tmp_path.glob(".b.staging-*"))


def test_out_that_is_not_a_build_folder(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="exists and is not a build folder"):
        BuildWriter(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    (tmp_path / "empty").mkdir()
    make(tmp_path / "empty")  # an empty folder is fine
    assert open_build(tmp_path / "empty").read("features").height == 3


# -- the reader refuses a folder that does not match its manifest ------------------------------


@pytest.fixture()
def built(tmp_path):
    return make(tmp_path / "b")


def test_missing_file(built):
    (built / "texts.parquet").unlink()
    with pytest.raises(InputError, match=r"texts.parquet: does not match manifest.json \(changed after the build\?\): missing"):
        open_build(built)


def test_truncated_parquet(built):
    data = (built / "features.parquet").read_bytes()
    (built / "features.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"features.parquet: does not match manifest.json .*: {len(data) // 2} bytes, committed {len(data)}"):
        open_build(built)


def test_same_size_but_damaged_footer(built):
    path = built / "features.parquet"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # inside the footer length / magic
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="features.parquet: does not match manifest.json .*: not readable as Parquet"):
        open_build(built)


def test_changed_row_count(built):
    manifest = json.loads((built / MANIFEST).read_text())
    manifest["files"]["texts.parquet"]["rows"] = 7
    (built / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="texts.parquet: does not match manifest.json .*: 6 rows, committed 7"):
        open_build(built)


def test_changed_content_of_the_same_size(built):
    """Same size, same row count, other bytes: only the sha256 tells (the default, full check)."""
    path = built / "texts.parquet"
    data = bytearray(path.read_bytes())
    data[4] ^= 0x01  # inside the first data page, not the footer
    path.write_bytes(bytes(data))
    open_build(built, verify="quick")  # size and row count still match
    with pytest.raises(InputError, match="texts.parquet: does not match manifest.json .*: sha256 differs"):
        open_build(built)
    with pytest.raises(ValueError, match="verify must be one of"):
        open_build(built, verify="some")


def test_manifest_problems(built):
    good = (built / MANIFEST).read_text()
    for text, message in (
        ("{", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (json.dumps({"schema_version": 1}), "schema version 1, this pinfeatures reads 2: rebuild the folder"),
        (json.dumps({"schema_version": 2}), "no build_id, files or outputs: not a committed build"),
        (good.replace('"title+boards"', '"title+magic"'), "variants: unknown source 'magic'"),
    ):
        (built / MANIFEST).write_text(text)
        with pytest.raises(InputError, match=message):
            open_build(built)
    manifest = json.loads(good)
    del manifest["outputs"]["rejects"]
    (built / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="the rejects table is missing from the manifest"):
        open_build(built)
    (built / MANIFEST).unlink()
    with pytest.raises(InputError, match="manifest.json: missing: not a build folder, or a build that never committed"):
        open_build(built)


def test_a_table_the_build_lacks(built):
    with pytest.raises(InputError, match="this build has no query_pins table"):
        open_build(built).read("query_pins")


# -- the lock ---------------------------------------------------------------------------------


def test_second_writer_names_the_lock_holder(tmp_path):
    with BuildWriter(tmp_path / "b"):
        with pytest.raises(BuildLocked) as err:
            BuildWriter(tmp_path / "b")
    msg = str(err.value)
    assert "another build is writing here" in msg and f"pid {os.getpid()} on {socket.gethostname()}, started 20" in msg
    assert "\n" not in msg
    make(tmp_path / "b")  # released: the next build goes ahead


# -- recovery of what a killed build left beside OUT -------------------------------------------


def test_stale_staging_folders_are_removed(built):
    stale = built.parent / ".b.staging-20200101T000000Z-dead"
    stale.mkdir()
    (stale / "features.parquet").write_text("half written")
    old_id = open_build(built).build_id
    make(built)
    assert not stale.exists() and open_build(built).build_id != old_id


def test_fallback_swap_when_renameat2_is_missing(built, monkeypatch):
    monkeypatch.setattr(buildfolder, "_exchange", lambda a, b: False)
    old_id = open_build(built).build_id
    make(built)
    assert open_build(built).build_id != old_id
    assert sorted(p.name for p in built.parent.iterdir()) == [".b.lock", ".b.lock.json", "b"]


def test_interrupted_fallback_swap_is_finished_or_undone(tmp_path):
    """Killed between the fallback's two renames: OUT is absent, the previous build is `.OUT.replaced-*`."""
    first = make(tmp_path / "b")
    first_id = open_build(first).build_id
    # undo: only the moved-aside previous build is there
    os.rename(first, tmp_path / ".b.replaced-x")
    w = BuildWriter(first)
    w.close()
    assert open_build(first).build_id == first_id
    # finish: a complete staged build (manifest written) and the moved-aside one
    staged = make(tmp_path / "other")
    staged_id = open_build(staged).build_id
    os.rename(first, tmp_path / ".b.replaced-y")
    os.rename(staged, tmp_path / ".b.staging-z")
    BuildWriter(first).close()
    assert open_build(first).build_id == staged_id
    assert not list(tmp_path.glob(".b.*-*"))


def test_a_symlinked_out_is_committed_at_its_target(tmp_path):
    real = make(tmp_path / "real")
    (tmp_path / "link").symlink_to(real)
    old_id = open_build(real).build_id
    make(tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and open_build(tmp_path / "link").build_id == open_build(real).build_id != old_id
    assert sorted(p.name for p in tmp_path.iterdir()) == [".real.lock", ".real.lock.json", "link", "real"]


@pytest.mark.parametrize("command", [["report"], ["evaluate", "--judgments", "j.csv"], ["pairs", "--sample", "5"]])
def test_commands_refuse_a_tampered_folder_in_one_line(built, command, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pinfeatures.cli import cli

    monkeypatch.chdir(tmp_path)
    pl.DataFrame({"query": ["q"], "pin_id": ["p1"], "label": [3]}).write_csv(tmp_path / "j.csv")
    (built / "rejects.parquet").write_bytes(b"PAR1")
    res = CliRunner().invoke(cli, [command[0], "--build", str(built), *command[1:]])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"pinfeatures: error: {built / 'rejects.parquet'}: does not match manifest.json (changed after the build?): 4 bytes, committed "
        f"{json.loads((built / MANIFEST).read_text())['files']['rejects.parquet']['bytes']}"
    ]


def test_file_sha256_reads_every_chunk(tmp_path):
    # 3 MiB + 1 byte: the reader's 1 MiB chunks end mid-file, and the last holds one byte
    data = bytes(range(256)) * (3 * 4096) + b"x"
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty.bin").write_bytes(b"")
    assert file_sha256(tmp_path / "empty.bin") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# -- the manifest's statistics and the text layout ------------------------------------------------


def test_coverage_and_language_counts():
    features = pl.DataFrame(
        {
            "pin_id": ["p1", "p2", "p3", "p4", "p5", "p6"],
            "title": ["a", "b", None, "d", "e", "f"],
            "description": [None, None, None, "x", None, None],
            "caption": ["c", None, None, None, None, None],
            "boards": [["b"], [], [], [], ["b"], []],
            "queries": [[], [], [], [], [], ["q"]],
            "language": ["en", "en", "en", "fr", "de", "fr"],
        }
    )
    assert buildfolder.coverage_stats(features) == {
        "overall": {"title": 0.833333, "description": 0.166667, "caption": 0.166667, "boards": 0.333333, "queries": 0.166667},
        "by_language": {  # most pins first, then by language
            "en": {"pins": 3, "title": 0.666667, "description": 0.0, "caption": 0.333333, "boards": 0.333333, "queries": 0.0},
            "fr": {"pins": 2, "title": 1.0, "description": 0.5, "caption": 0.0, "boards": 0.0, "queries": 0.5},
            "de": {"pins": 1, "title": 1.0, "description": 0.0, "caption": 0.0, "boards": 1.0, "queries": 0.0},
        },
    }
    assert list(buildfolder.coverage_stats(features)["by_language"]) == ["en", "fr", "de"]
    assert list(buildfolder.language_counts(features).items()) == [("en", 3), ("fr", 2), ("de", 1)]
    tied = features.with_columns(pl.Series("language", ["fr", "en", "fr", "en", "de", "zz"]))
    assert list(buildfolder.language_counts(tied.lazy()).items()) == [("en", 2), ("fr", 2), ("de", 1), ("zz", 1)]
    assert list(buildfolder.coverage_stats(tied)["by_language"]) == ["en", "fr", "de", "zz"]
    assert buildfolder.coverage_stats(features.head(0)) == {"overall": dict.fromkeys(SOURCES, 0.0), "by_language": {}}
    assert buildfolder.language_counts(features.head(0)) == {}


def test_token_stats():
    texts = pl.DataFrame(
        {
            "variant": ["title"] * 5 + ["title+boards"] * 2 + ["caption"],
            "text": ["a", "", "b c", "d", "e", "x", "y", ""],
            "n_tokens": [1, 0, 2, 10, 3, 4, 7, 0],
            "truncated": [False, False, False, True, False, True, True, False],
        }
    )
    got = buildfolder.token_stats(texts, ["title+boards", "title", "queries"])
    assert list(got) == ["title+boards", "title"]  # the variants' order; one without texts left out
    assert got["title"] == {"texts": 5, "mean": 3.2, "p50": 2.0, "p95": 10.0, "max": 10.0, "truncated_share": 0.2, "empty_share": 0.2}
    assert got["title+boards"] == {"texts": 2, "mean": 5.5, "p50": 7.0, "p95": 7.0, "max": 7.0, "truncated_share": 1.0, "empty_share": 0.0}
    thirds = pl.DataFrame({"variant": ["t"] * 3, "text": ["a", "", ""], "n_tokens": [1, 0, 1], "truncated": [True, False, False]})
    assert buildfolder.token_stats(thirds.lazy(), ["t"])["t"] == {
        "texts": 3, "mean": 0.6667, "p50": 1.0, "p95": 1.0, "max": 1.0, "truncated_share": 0.3333, "empty_share": 0.6667}
    # texts with no token counts (nothing to average): the statistics are null, not an error
    uncounted = pl.DataFrame({"variant": ["t"], "text": [""], "n_tokens": [None], "truncated": [None]},
                             schema={"variant": pl.Utf8, "text": pl.Utf8, "n_tokens": pl.Int64, "truncated": pl.Boolean})
    assert buildfolder.token_stats(uncounted, ["t"]) == {
        "t": {"texts": 1, "mean": None, "p50": None, "p95": None, "max": None, "truncated_share": None, "empty_share": 1.0}}


@pytest.mark.skipif(not hasattr(os, "uname") or os.uname().sysname != "Linux", reason="renameat2 is Linux's")
def test_exchange_swaps_two_folders_in_one_step(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("was a")
    (b / "x").write_text("was b")
    assert buildfolder._exchange(a, b) is True
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("was b", "was a")
    # paths relative to the working directory (an `--out` given as a relative path)
    monkeypatch.chdir(tmp_path)
    assert buildfolder._exchange(Path("a"), Path("b")) is True
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("was a", "was b")
    # a failure other than "not supported" is an OSError with the call's own errno
    with pytest.raises(OSError) as failed:
        buildfolder._exchange(a, tmp_path / "missing")
    assert failed.value.errno == errno.ENOENT
    assert (a / "x").read_text() == "was a"


def test_json_files_are_indented_utf8_and_take_paths(tmp_path):
    """manifest.json and the lock's holder file: two-space indents, non-ASCII as itself (not
    \\u escapes), values JSON has no type for (a Path) written as their text."""
    path = tmp_path / "m.json"
    buildfolder._write_json(path, {"out": tmp_path / "café", "n": 1})
    assert path.read_bytes().decode("utf-8") == '{\n  "out": "' + str(tmp_path / "café") + '",\n  "n": 1\n}\n'


def test_pause_hook_announces_the_step_and_waits_for_go(tmp_path, monkeypatch):
    """The hook the kill tests (tests/build/test_commit.py, slow) stop a build with: it writes
    <step>.reached holding its pid, then waits until <step>.go exists; other steps pass."""
    import threading

    monkeypatch.setenv("PINFEATURES_TEST_PAUSE_AT", "commit")
    monkeypatch.setenv("PINFEATURES_TEST_PAUSE_DIR", str(tmp_path))
    buildfolder._pause("table:features")  # not the step asked for: returns at once
    assert list(tmp_path.iterdir()) == []
    paused = threading.Thread(target=buildfolder._pause, args=("commit",), daemon=True)
    paused.start()
    for _ in range(500):
        if (tmp_path / "commit.reached").exists() and (tmp_path / "commit.reached").read_text():
            break
        time.sleep(0.01)
    assert (tmp_path / "commit.reached").read_text() == str(os.getpid())
    time.sleep(0.1)
    assert paused.is_alive()  # still waiting for go
    started = time.monotonic()
    (tmp_path / "commit.go").touch()
    paused.join(timeout=5)
    assert not paused.is_alive() and time.monotonic() - started < 0.5


def test_commit_passes_its_named_steps_in_order(tmp_path, monkeypatch):
    """The steps the kill tests stop a build at (tests/build/test_commit.py): a new folder is
    renamed in; an existing one is exchanged (then `swapped`), or, where renameat2 is missing,
    moved aside; and the manifest records when it was committed."""
    steps: list[str] = []
    monkeypatch.setattr(buildfolder, "_pause", steps.append)
    tables = {"features": FEATURES, "texts": TEXTS}
    before = datetime.now(timezone.utc).replace(microsecond=0)
    write_build(tmp_path / "out", tables)
    manifest = json.loads((tmp_path / "out" / MANIFEST).read_text())
    assert before <= datetime.fromisoformat(manifest["created_at"]) <= datetime.now(timezone.utc)
    assert list(manifest)[:3] == ["schema_version", "build_id", "created_at"]
    tables_written = ["table:rejects", "table:features", "table:texts"]
    assert steps == ["locked", *tables_written, "manifest", "swap", "committed"]
    steps.clear()
    write_build(tmp_path / "out", tables)  # over the previous build
    # with a previous build, its changes are written too
    swapped = ["locked", *tables_written, "table:changes", "manifest", "swap", "swapped", "committed"]
    assert steps in (swapped, [s for s in swapped if s != "swapped"])  # without renameat2: no `swapped`
    steps.clear()
    monkeypatch.setattr(buildfolder, "_exchange", lambda a, b: False)
    write_build(tmp_path / "out", tables)
    assert steps == ["locked", *tables_written, "table:changes", "manifest", "swap", "committed"]
    # the staging and replaced folders are gone (the lock file stays, released)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", ".out.lock.json", "out"]


def test_writer_names_its_staging_folder_and_lock_for_recovery(tmp_path):
    """What a killed build leaves is found again by name (`_recover` globs `.OUT.staging-*`), and
    the lock's holder file says who writes: so the writer's names are a contract. The output's
    parent folders are made."""
    out = tmp_path / "a" / "b" / "out"
    with BuildWriter(out) as writer:
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", writer.build_id)
        assert writer.staging == out.parent / f".out.staging-{writer.build_id}" and writer.staging.is_dir()
        holder = json.loads((out.parent / ".out.lock.json").read_text(encoding="utf-8"))
        assert holder["build_id"] == writer.build_id and holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert (out.parent / ".out.lock").exists()


def test_tables_are_written_with_the_parquet_options(tmp_path):
    """zstd with statistics, in row groups of 100,000 rows (PARQUET_OPTIONS), and a part's folder made."""
    import pyarrow.parquet as pq

    n = 100_001
    texts = pl.DataFrame({"pin_id": [f"p{i}" for i in range(n)], "variant": ["title"] * n, "text": ["t"] * n,
                          "n_tokens": pl.Series([1] * n, dtype=pl.Int32), "truncated": [False] * n})
    with BuildWriter(tmp_path / "out") as writer:
        writer.add_part("texts", texts)
        meta = pq.ParquetFile(writer.staging / "texts" / "part-00000.parquet").metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [100_000, 1]
    chunk = meta.row_group(0).column(0)
    assert chunk.compression == "ZSTD" and chunk.statistics is not None and chunk.statistics.has_min_max


def test_exchange_is_false_where_unsupported(monkeypatch, tmp_path):
    """No renameat2 in the C library, or a kernel or file system without RENAME_EXCHANGE: False,
    and the caller commits another way."""
    import ctypes

    class Unsupported:
        def __init__(self, err: int):
            self.err = err

        def renameat2(self, *args):
            ctypes.set_errno(self.err)
            return -1

    class NoSuchFunction:
        def __getattr__(self, name):
            raise AttributeError(name)

    for lib in (Unsupported(errno.ENOSYS), Unsupported(errno.EINVAL), Unsupported(errno.EOPNOTSUPP), NoSuchFunction()):
        monkeypatch.setattr(ctypes, "CDLL", lambda *args, lib=lib, **kwargs: lib)
        assert buildfolder._exchange(tmp_path / "a", tmp_path / "b") is False
    monkeypatch.setattr(ctypes, "CDLL", lambda *args, **kwargs: Unsupported(errno.EACCES))
    with pytest.raises(OSError, match="renameat2"):
        buildfolder._exchange(tmp_path / "a", tmp_path / "b")


def test_text_layout_lines_and_parse():
    layout = TextLayout(("queries", "title", "description", "caption", "boards"),
                        {"title": "T", "description": "D", "caption": "I", "boards": "B", "queries": "Q"}, " || ", "; ")
    sources = {"title": "Red sofa", "description": "  ", "caption": None, "boards": ["Living", None, " ", "Den"], "queries": ("sofa",)}
    assert layout.lines(Variant.parse("title+description+caption+boards+queries"), sources) == ["Q: sofa", "T: Red sofa", "B: Living; Den"]
    assert layout.lines(Variant.parse("title+boards"), sources) == ["T: Red sofa", "B: Living; Den"]
    assert layout.lines(Variant.parse("caption"), sources) == []
    assert layout.lines(Variant.parse("boards"), {"boards": [None, "  "]}) == []
    assert layout.label("boards") == "B:"
    assert layout.parse("Q: sofa || T: Red sofa: the best || B: Living; Den") == {"queries": "sofa", "title": "Red sofa: the best", "boards": "Living; Den"}
    assert layout.parse("") == {}
    with pytest.raises(ValueError, match="appears twice"):
        layout.parse("T: a || T: b")
    with pytest.raises(ValueError, match="no known label: 'T:a'"):
        layout.parse("T:a")  # a label is followed by one space
    assert TextLayout.from_dict(layout.to_dict()) == layout


def test_layout_from_settings_and_a_malformed_layout_in_the_manifest(built):
    from pinfeatures.build.settings import BuildSettings

    cfg = BuildSettings(field_separator=" || ", list_separator="; ", source_order=("queries", "title", "description", "caption", "boards"))
    assert TextLayout.from_settings(cfg) == TextLayout(("queries", "title", "description", "caption", "boards"), dict(cfg.labels), " || ", "; ")
    good = json.loads((built / MANIFEST).read_text())
    layout = TextLayout().to_dict()
    for bad, message in (
        ({**layout, "order": ["title"] * 5}, "text_layout must name each source once, with a label"),  # labels fine, order not
        ({**layout, "labels": {"title": "T"}}, "text_layout must name each source once, with a label"),  # order fine, labels not
        ({k: v for k, v in layout.items() if k != "list_separator"}, "text_layout is missing or malformed"),
    ):
        (built / MANIFEST).write_text(json.dumps({**good, "text_layout": bad}))
        with pytest.raises(InputError, match=rf"{MANIFEST}: {message}"):
            open_build(built)


def test_reader_checks_each_part_of_the_manifest(built):
    good = json.loads((built / MANIFEST).read_text())
    for manifest, message in (
        ({**good, "files": []}, "no build_id, files or outputs"),  # outputs and build_id fine
        ({**good, "outputs": []}, "no build_id, files or outputs"),
        ({**good, "build_id": 7}, "no build_id, files or outputs"),
        ({**good, "files": {**good["files"], "texts.parquet": {"rows": 6, "bytes": 1}}}, r"texts.parquet: manifest.json entry is malformed"),
        ({**good, "files": {**good["files"], "texts.parquet": ["not", "a", "dict"]}}, r"texts.parquet: manifest.json entry is malformed"),
    ):
        (built / MANIFEST).write_text(json.dumps(manifest))
        with pytest.raises(InputError, match=message):
            open_build(built)
    (built / MANIFEST).write_text(json.dumps({k: v for k, v in good.items() if k != "variants"}))
    build = open_build(built)
    assert build.variants == () and build.has("texts") and not build.has("query_pins")
    assert build.read("texts", ["variant", "pin_id"]).columns == ["variant", "pin_id"]
    assert buildfolder.mark_derived({"ndcg": 0.5}, build) == {"build_id": good["build_id"], "build": str(built), "ndcg": 0.5}


def test_a_table_whose_schema_differs_is_named_with_its_file(tmp_path):
    out = make(tmp_path / "b")
    pl.read_parquet(out / "texts.parquet").with_columns(pl.col("n_tokens").cast(pl.Utf8)).write_parquet(out / "texts.parquet")
    manifest = json.loads((out / MANIFEST).read_text())
    data = (out / "texts.parquet").read_bytes()
    manifest["files"]["texts.parquet"] = {"rows": 6, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (out / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(InputError) as err:
        open_build(out)
    assert str(err.value) == f"{out / 'texts.parquet'}, column 'n_tokens': expected Int32, got String"


def test_row_hashes_given_are_kept_and_an_unreadable_lock_holder_is_unknown(tmp_path):
    texts = TEXTS.with_columns(pl.lit("given", pl.Utf8).alias("text_sha256"))
    assert buildfolder.with_row_hashes("texts", texts).get_column("text_sha256").to_list() == ["given"] * 6
    features = FEATURES.with_columns(pl.lit("given", pl.Utf8).alias("content_sha256"))
    assert buildfolder.with_row_hashes("features", features).get_column("content_sha256").to_list() == ["given"] * 3
    holder = tmp_path / "lock.json"
    holder.write_text("{not json")
    assert buildfolder._describe_holder(holder) == "holder unknown"
    holder.write_text(json.dumps({"pid": 1, "host": "h", "started": "2020"}))
    assert buildfolder._describe_holder(holder) == "pid 1 on h, started 2020"


def test_a_previous_build_that_cannot_be_opened_is_noted_in_the_changes(built):
    (built / "texts.parquet").unlink()
    manifest = json.loads((make(built) / MANIFEST).read_text())
    assert manifest["changes"] == {"previous": None, "note": f"the folder's previous build was not used for changes: {built / 'texts.parquet'}: does not match manifest.json (changed after the build?): missing"}
