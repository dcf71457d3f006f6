"""The shared caption and fetch cache: concurrent workers, rebuilds over HTTP, leases, the old format."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[2]

from pinfeatures.caption.cache import CachedCaption, CachedFetch, CaptionCache, _Store, compact
from pinfeatures.caption.loop import caption_pins
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.errors import ConfigError
from tests.conftest import small_tables, write_inputs

N_IMAGES = 16
FP = "f" * 64


@pytest.fixture(autouse=True)
def no_signal_to_this_process():
    """A lease holder's liveness is probed with signal 0: a real signal sent to this process (the
    holder in most tests here) fails the test rather than killing the run."""
    received = []
    previous = signal.signal(signal.SIGHUP, lambda signum, frame: received.append(signum))
    yield
    signal.signal(signal.SIGHUP, previous)
    assert received == []


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"}


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (i * 8 % 256, 255 - i * 8 % 256, (i * 37) % 256)).save(buf, "PNG")
    return buf.getvalue()


# -- two workers on one cache ---------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import polars as pl
    from pinfeatures.caption.loop import caption_pins
    from pinfeatures.caption.backends import load_captioner, resolve_model
    from pinfeatures.caption.settings import CaptionSettings

    class Counting:  # the real demo model, slowed so the two workers overlap, counting images it sees
        def __init__(self, inner):
            self.inner, self.device, self.dtype, self.target_size = inner, inner.device, inner.dtype, inner.target_size
            self.seen = []
        def caption(self, images):
            time.sleep(0.2)
            out = self.inner.caption(images)
            self.seen.append(len(images))
            return out

    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=2)
    cap = Counting(load_captioner(resolve_model(cfg), cfg))
    pins = pl.read_parquet(sys.argv[1]).select("pin_id", "image")
    print("ready", flush=True)
    sys.stdin.readline()  # both workers start together
    out, stats = caption_pins(pins, cfg, images_root=Path(sys.argv[2]), cache_dir=sys.argv[3], quiet=True, captioner=cap)
    out.write_parquet(sys.argv[4])
    print(json.dumps({"model_images": sum(cap.seen), "hits": stats["cache_hits"], "captioned": stats["captioned"]}), flush=True)
    """
)


def test_two_concurrent_workers_never_caption_one_image_twice(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    for i in range(N_IMAGES):
        (root / f"{i}.png").write_bytes(_png(i))
    pins = tmp_path / "pins.parquet"
    pl.DataFrame({"pin_id": [str(i) for i in range(N_IMAGES)], "image": [f"{i}.png" for i in range(N_IMAGES)]}).write_parquet(pins)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, str(script), str(pins), str(root), str(cache), str(tmp_path / f"out{k}.parquet")],
                              env=_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-2000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    # every image went through the model exactly once, across both workers
    assert sum(r["model_images"] for r in results) == N_IMAGES
    assert all(r["hits"] + r["captioned"] == N_IMAGES for r in results)
    a, b = (pl.read_parquet(tmp_path / f"out{k}.parquet") for k in range(2))
    assert a.equals(b) and a["caption_status"].to_list() == ["ok"] * N_IMAGES
    # one row per image in the parts (no image written twice), and no lease left behind
    fp_rows = pl.read_parquet(cache / "captions" / "*.parquet")
    assert fp_rows.height == N_IMAGES and fp_rows["sha256"].n_unique() == N_IMAGES
    assert [p for p in (cache / "leases").rglob("*") if p.is_file()] == []


# -- a rebuild over HTTP: nothing fetched, nothing captioned ------------------------------------


class _Counting(http.server.BaseHTTPRequestHandler):
    requests: Counter = Counter()
    images: dict[str, bytes] = {}

    def do_GET(self):
        type(self).requests[self.path] += 1
        body = self.images.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def image_server():
    _Counting.requests = Counter()
    _Counting.images = {f"/{i}.png": _png(i) for i in range(4)}
    _Counting.images["/copy.png"] = _png(0)  # same bytes as /0.png under another URL
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _build(inp: Path, out: Path, cache: Path, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "build", "--input", str(inp), "--out", str(out),
                           "--caption-model", "demo", "--cache", str(cache), "--config", str(config), "--quiet"],
                          env=_env(), capture_output=True, text=True, timeout=300, check=False)


def test_rebuild_fetches_and_captions_nothing_cached(tmp_path, image_server):
    tables = small_tables()
    urls = [f"{image_server}/0.png", f"{image_server}/1.png", f"{image_server}/missing.png", f"{image_server}/copy.png"]
    tables["pins"] = tables["pins"].with_columns(pl.Series("image", urls))
    inp = write_inputs(tmp_path / "in", tables)
    config = tmp_path / "c.toml"
    config.write_text("[caption]\nallow_private_addresses = true\nmax_new_tokens = 6\nfetch_retries = 0\n")
    cache = tmp_path / "cache"
    r1 = _build(inp, tmp_path / "out1", cache, config)
    assert r1.returncode == 0, r1.stderr[-2000:]
    assert dict(_Counting.requests) == {"/0.png": 1, "/1.png": 1, "/missing.png": 1, "/copy.png": 1}
    m1 = json.loads((tmp_path / "out1" / "manifest.json").read_text())
    assert (m1["caption"]["captioned"], m1["caption"]["status_counts"]) == (2, {"fetch_failed": 1, "ok": 3})

    _Counting.requests.clear()
    r2 = _build(inp, tmp_path / "out2", cache, config)
    assert r2.returncode == 0, r2.stderr[-2000:]
    assert sum(_Counting.requests.values()) == 0  # the fetch records say what each URL gave
    m2 = json.loads((tmp_path / "out2" / "manifest.json").read_text())
    assert (m2["caption"]["captioned"], m2["caption"]["cache_hits"]) == (0, 2)
    f1, f2 = (pl.read_parquet(tmp_path / d / "features.parquet").select("pin_id", "caption", "caption_status", "image_sha256")
              for d in ("out1", "out2"))
    assert f1.equals(f2)

    # other generation settings: captioned anew, but the bytes come from the cache's blobs
    config.write_text("[caption]\nallow_private_addresses = true\nmax_new_tokens = 4\nfetch_retries = 0\n")
    r3 = _build(inp, tmp_path / "out3", cache, config)
    assert r3.returncode == 0, r3.stderr[-2000:]
    assert sum(_Counting.requests.values()) == 0
    m3 = json.loads((tmp_path / "out3" / "manifest.json").read_text())
    assert m3["caption"]["fingerprint"] != m1["caption"]["fingerprint"] and m3["caption"]["captioned"] == 2

    # a record fetched with private addresses allowed is not reused when they are refused
    config.write_text("[caption]\nmax_new_tokens = 6\n")
    r4 = _build(inp, tmp_path / "out4", cache, config)
    assert r4.returncode == 0, r4.stderr[-2000:]
    m4 = json.loads((tmp_path / "out4" / "manifest.json").read_text())
    assert m4["caption"]["status_counts"] == {"blocked_address": 4}
    assert sum(_Counting.requests.values()) == 0


def test_sha256_keyed_captions_rebuild_fetches_nothing_whole_or_sharded(tmp_path, image_server):
    """Captions keyed by image sha256 hash the pins' URL images through the fetch records: a rebuild
    (whole or sharded) makes no request, and a failed URL is not asked again."""
    import hashlib

    from pinfeatures.build.run import run_build
    from pinfeatures.build.settings import BuildSettings

    tables = small_tables()
    tables["pins"] = tables["pins"].with_columns(
        pl.Series("image", [f"{image_server}/0.png", f"{image_server}/copy.png", f"{image_server}/missing.png", f"{image_server}/1.png"]))
    sha0, sha1 = (hashlib.sha256(_png(i)).hexdigest() for i in (0, 1))
    tables["captions"] = pl.DataFrame({"pin_id": [None], "image_sha256": [sha0], "caption": ["a red square"]},
                                      schema={"pin_id": pl.Utf8, "image_sha256": pl.Utf8, "caption": pl.Utf8})
    inp = write_inputs(tmp_path / "in", tables)
    caption = CaptionSettings(allow_private_addresses=True, fetch_retries=0)
    want = [("p1", "a red square", "precomputed", sha0), ("p2", "a red square", "precomputed", sha0),
            ("p3", None, "skipped", None), ("p4", None, "skipped", sha1)]

    def run(out: str, cache: str, shards: int = 0) -> list[tuple]:
        run_build(BuildSettings(input=str(inp), out=str(tmp_path / out), quiet=True, shards=shards,
                                caption=CaptionSettings(**{**caption.to_dict(), "cache": str(tmp_path / cache)})))
        frame = pl.read_parquet(tmp_path / out / ("features/*.parquet" if shards else "features.parquet"))
        return frame.sort("pin_id").select("pin_id", "caption", "caption_status", "image_sha256").rows()

    every_url_once = {"/0.png": 1, "/copy.png": 1, "/missing.png": 1, "/1.png": 1}
    for shards, cache in ((0, "cache_whole"), (2, "cache_sharded")):
        _Counting.requests.clear()
        assert run(f"first{shards}", cache, shards) == want
        assert dict(_Counting.requests) == every_url_once
        _Counting.requests.clear()
        assert run(f"again{shards}", cache, shards) == want
        assert dict(_Counting.requests) == {}  # the fetch records (ok and fetch_failed) answer every URL
    # the whole build's cache serves a sharded rebuild too
    assert run("sharded_from_whole", "cache_whole", 3) == want and dict(_Counting.requests) == {}
    # a run refusing private addresses does not trust records fetched with them allowed: all blocked, no request
    caption = CaptionSettings(fetch_retries=0)
    assert [r[2:] for r in run("refused", "cache_whole")] == [("skipped", None)] * 4
    assert dict(_Counting.requests) == {}


def test_retry_failed_fetches_a_failed_url_again(tmp_path, image_server):
    refs = [f"{image_server}/0.png", f"{image_server}/late.png"]
    pins = pl.DataFrame({"pin_id": ["a", "b"], "image": refs})
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, allow_private_addresses=True, fetch_retries=0)
    out, _ = caption_pins(pins, cfg, images_root=None, cache_dir=tmp_path / "c", quiet=True)
    assert out["caption_status"].to_list() == ["ok", "fetch_failed"]
    _Counting.images["/late.png"] = _png(3)  # the server has it now
    out, _ = caption_pins(pins, cfg, images_root=None, cache_dir=tmp_path / "c", quiet=True)
    assert out["caption_status"].to_list() == ["ok", "fetch_failed"]  # the cached failure
    assert _Counting.requests["/late.png"] == 1
    retry = CaptionSettings(**{**cfg.to_dict(), "retry_failed": True})
    out, stats = caption_pins(pins, retry, images_root=None, cache_dir=tmp_path / "c", quiet=True)
    assert out["caption_status"].to_list() == ["ok", "ok"] and stats["captioned"] == 1
    assert dict(_Counting.requests) == {"/0.png": 1, "/late.png": 2}


# -- leases ------------------------------------------------------------------------------------


def test_a_lease_blocks_others_until_released_or_expired(tmp_path):
    a = CaptionCache(tmp_path / "c", lease_s=600)
    b = CaptionCache(tmp_path / "c", lease_s=600)
    assert a.claim(["s1", "s2"], FP) == {"s1", "s2"}
    assert b.claim(["s1", "s2", "s3"], FP) == {"s3"}  # a is alive: its leases hold
    a.release(["s1"], FP)
    assert b.claim(["s1", "s2"], FP) == {"s1"}
    b.release(["s2"], FP)  # not b's lease: left alone
    assert b.claim(["s2"], FP) == set()
    # an expired lease is taken over, even from a live owner
    short = CaptionCache(tmp_path / "c", lease_s=1)
    lease = tmp_path / "c" / "leases" / FP[:16] / "s9"
    assert short.claim(["s9"], FP) == {"s9"}
    held = json.loads(lease.read_text())
    lease.write_text(json.dumps({**held, "expires": held["expires"] - 10}))
    assert b.claim(["s9"], FP) == {"s9"}
    assert json.loads(lease.read_text())["owner"] == b.owner
    # a half-written lease (owner killed between create and write) is stale
    lease.write_text("{")
    assert a.claim(["s9"], FP) == {"s9"}


def test_a_dead_workers_lease_is_taken_over_at_once(tmp_path):
    code = ("import sys; from pinfeatures.caption.cache import CaptionCache; "
            f"print(CaptionCache(sys.argv[1], lease_s=600).claim(['s1'], '{FP}'))")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], env=_env(), capture_output=True, text=True, timeout=60, check=True)
    assert r.stdout.strip() == "{'s1'}"  # exited without releasing (no close): a dead owner on this host
    assert CaptionCache(tmp_path / "c").claim(["s1"], FP) == {"s1"}


def _lease(cache_dir: Path, sha: str, **held) -> Path:
    path = cache_dir / "leases" / FP[:16] / sha
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(held))
    return path


DEAD_PID = 2**31 - 1  # above any pid_max: no such process


def test_a_lease_is_stale_once_past_its_expiry_or_its_process_gone_on_this_host(tmp_path, monkeypatch):
    import socket

    cache = CaptionCache(tmp_path / "c", lease_s=600)
    cache.clock = lambda: 1000.0
    here, there = socket.gethostname(), "elsewhere.example"
    leases = {
        "expires_now": dict(owner="x", host=there, pid=DEAD_PID, expires=1000.0),  # not yet past: held
        "expired": dict(owner="x", host=there, pid=DEAD_PID, expires=999.5),
        "no_expiry": dict(owner="x", host=there, pid=DEAD_PID),  # a lease without an expiry is stale
        "dead_here": dict(owner="x", host=here, pid=DEAD_PID, expires=5000.0),
        "alive_here": dict(owner="x", host=here, pid=os.getpid(), expires=5000.0),
        "dead_elsewhere": dict(owner="x", host=there, pid=DEAD_PID, expires=5000.0),  # another host's pids are not ours to check
        "pid_not_a_number": dict(owner="x", host=here, pid=str(os.getpid()), expires=5000.0),
    }
    for sha, held in leases.items():
        _lease(tmp_path / "c", sha, **held)
    assert cache.claim(list(leases), FP) == {"expired", "no_expiry", "dead_here", "pid_not_a_number"}
    mine = json.loads((tmp_path / "c" / "leases" / FP[:16] / "expired").read_text())
    assert (mine["owner"], mine["pid"], mine["expires"]) == (cache.owner, os.getpid(), 1600.0)
    # a process this user may not signal exists: its lease holds
    _lease(tmp_path / "c", "not_ours", owner="x", host=here, pid=DEAD_PID, expires=5000.0)

    def denied(pid, sig):
        raise PermissionError(pid)

    monkeypatch.setattr(os, "kill", denied)
    assert cache.claim(["not_ours"], FP) == set()


def test_breaking_a_stale_lease_loses_to_another_breaker(tmp_path):
    cache = CaptionCache(tmp_path / "c")
    stale = dict(owner="gone", host="elsewhere.example", pid=1, expires=0.0)
    fresh = dict(owner="other-breaker", host="elsewhere.example", pid=1, expires=cache.clock() + 600)
    rename = cache.store.rename

    # another breaker renamed the stale lease away and put its own in place between our read and our rename
    path = _lease(tmp_path / "c", "s1", **stale)

    def replaced_first(src, dst):
        path.write_text(json.dumps(fresh))
        cache.store.rename = rename
        rename(src, dst)

    cache.store.rename = replaced_first
    assert cache.claim(["s1"], FP) == set()
    assert json.loads(path.read_text())["owner"] == "other-breaker"  # theirs, put back
    assert [p.name for p in path.parent.iterdir()] == ["s1"]  # no tomb left behind
    # ...and one that won the rename: ours finds the lease gone
    path2 = _lease(tmp_path / "c", "s2", **stale)

    def taken_first(src, dst):
        path2.unlink()
        cache.store.rename = rename
        rename(src, dst)

    cache.store.rename = taken_first
    assert cache.claim(["s2"], FP) == set()
    # a stale lease broken by us alone: ours, and the tomb is gone
    path3 = _lease(tmp_path / "c", "s3", **stale)
    moves = []
    cache.store.rename = lambda src, dst: moves.append((src, dst)) or rename(src, dst)
    assert cache.claim(["s3"], FP) == {"s3"} and json.loads(path3.read_text())["owner"] == cache.owner
    [(src, tomb)] = moves  # the tomb lies beside the lease
    assert src.endswith("/s3") and os.path.dirname(tomb) == os.path.dirname(src) and os.path.basename(tomb).startswith(".stale-")
    cache.store.rename = rename
    assert sorted(p.name for p in path.parent.iterdir()) == ["s1", "s3"]
    # a live lease released between our failed create and our look at it: taken at once
    path4 = _lease(tmp_path / "c", "s4", **fresh)
    create = cache.store.create_exclusive

    def released_after(p, data):
        created = create(p, data)
        path4.unlink()
        cache.store.create_exclusive = create
        return created

    cache.store.create_exclusive = released_after
    assert cache.claim(["s4"], FP) == {"s4"} and json.loads(path4.read_text())["owner"] == cache.owner


# -- parts, blobs, compaction, old format, URLs --------------------------------------------------


def test_parts_are_visible_to_other_handles_and_compact_merges_them(tmp_path):
    a = CaptionCache(tmp_path / "c")
    b = CaptionCache(tmp_path / "c")
    a.put_many([("s1", FP, "one", "ok", "m", None)])
    a.put_many([("s2", FP, None, "unreadable", "m", "bad bytes")])
    b.put_many([("s1", FP, "one", "ok", "m", None)])  # the same image from another worker: harmless
    assert set(b.get_many(["s1", "s2", "s3"], FP)) == {"s1", "s2"}  # b re-reads the parts a wrote
    assert len(list((tmp_path / "c" / "captions").glob("*.parquet"))) == 3
    before = [r[:3] for r in a.all_rows(FP)]
    assert compact(tmp_path / "c")["captions"] == 3
    assert len(list((tmp_path / "c" / "captions").glob("*.parquet"))) == 1
    assert [r[:3] for r in CaptionCache(tmp_path / "c").all_rows(FP)] == before == [("s1", "one", "ok"), ("s2", None, "unreadable")]
    a.put_many([("s3", FP, "three", "ok", "m", None)])  # a handle that read the merged-away parts goes on
    assert [r[0] for r in b.all_rows(FP)] == ["s1", "s2", "s3"]


def test_compact_merges_a_table_of_two_parts_or_more_only(tmp_path):
    a = CaptionCache(tmp_path / "c")
    a.put_many([("s1", FP, "one", "ok", "m", None)])
    a.put_clip_scores([("s1", FP, "clip", 0.5)])
    a.put_clip_scores([("s2", FP, "clip", 0.25)])
    assert compact(tmp_path / "c") == {"captions": 0, "clip_scores": 2, "fetches": 0, "fingerprints": 0, "file_hashes": 0}
    assert len(list((tmp_path / "c" / "captions").glob("*.parquet"))) == 1
    assert len(list((tmp_path / "c" / "clip_scores").glob("*.parquet"))) == 1
    assert CaptionCache(tmp_path / "c").clip_score_rows() == [("s1", FP, "clip", 0.5), ("s2", FP, "clip", 0.25)]
    assert compact(tmp_path / "c")["clip_scores"] == 0  # one part now: nothing to merge


def test_a_damaged_part_is_a_config_error(tmp_path):
    (tmp_path / "c" / "captions").mkdir(parents=True)
    (tmp_path / "c" / "captions" / "0001-x.parquet").write_bytes(b"not parquet")
    with pytest.raises(ConfigError, match=f"cache: {re.escape(str(tmp_path / 'c'))} is not a usable caption cache"):
        CaptionCache(tmp_path / "c")


def test_blobs_are_checked_and_trimmed_oldest_first(tmp_path):
    import hashlib

    cache = CaptionCache(tmp_path / "c", blob_max_bytes=250)
    blobs = [bytes([i]) * 100 for i in range(3)]
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for i, (sha, data) in enumerate(zip(shas, blobs)):
        cache.put_blob(sha, data)
        os.utime(tmp_path / "c" / "blobs" / sha[:2] / sha, (1000 + i, 1000 + i))
    assert cache.trim_blobs() == 1  # 300 bytes > 250: the oldest goes
    assert [cache.get_blob(s) for s in shas] == [None, blobs[1], blobs[2]]
    (tmp_path / "c" / "blobs" / shas[1][:2] / shas[1]).write_bytes(b"damaged")
    assert cache.get_blob(shas[1]) is None  # bytes that no longer match their name are not used
    cache.put_blob("0" * 64, b"x" * 1000)  # larger than the whole bound: not kept
    assert cache.get_blob("0" * 64) is None


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file_url"])
def test_old_sqlite_cache_is_migrated(tmp_path, as_url):
    folder = tmp_path / "c"
    folder.mkdir()
    db = sqlite3.connect(folder / "captions.sqlite")
    db.executescript(
        "CREATE TABLE captions (sha256 TEXT, fingerprint TEXT, caption TEXT, status TEXT, model TEXT, detail TEXT, created_at REAL);"
        "CREATE TABLE clip_scores (sha256 TEXT, fingerprint TEXT, clip_fp TEXT, score REAL);"
        "CREATE TABLE fingerprints (fingerprint TEXT, settings TEXT, created_at REAL);"
        "CREATE TABLE file_hashes (path TEXT, size INTEGER, mtime_ns INTEGER, sha256 TEXT);"
        f"INSERT INTO captions VALUES ('s1', '{FP}', 'a cat', 'ok', 'demo', NULL, 5.0);"
        f"INSERT INTO clip_scores VALUES ('s1', '{FP}', 'clip', 0.25);"
    )
    db.commit()
    db.close()
    cache = CaptionCache(f"file://{folder}" if as_url else folder)  # a file:// URL is a local folder
    assert cache.all_rows(FP) == [("s1", "a cat", "ok", 5.0)]
    assert cache.clip_score_rows() == [("s1", FP, "clip", 0.25)]
    assert not (folder / "captions.sqlite").exists() and (folder / "captions.sqlite.migrated").exists()
    assert CaptionCache(folder).count() == 1  # migrated once


def test_cache_given_as_an_fsspec_url(tmp_path):
    pytest.importorskip("fsspec")
    url = "memory://pinfeatures-test-cache"
    a = CaptionCache(url)
    a.put_many([("s1", FP, "one", "ok", "m", None)])
    b = CaptionCache(url)
    assert b.get_many(["s1"], FP)["s1"].caption == "one"
    assert a.claim(["s1"], FP) == {"s1"} and b.claim(["s1"], FP) == set()
    a.put_blob("ab" * 32, b"x")
    assert b.get_blob("ab" * 32) is None  # checked against its sha256: b"x" is not that
    with pytest.raises(ConfigError, match="cache"):
        CaptionCache("nosuchscheme-xyz://bucket/cache")
    # a local path and a file:// URL are the same cache
    CaptionCache(tmp_path / "c").put_many([("s2", FP, "two", "ok", "m", None)])
    assert CaptionCache(f"file://{tmp_path / 'c'}").get_many(["s2"], FP)["s2"].caption == "two"


def test_cache_setting_keeps_urls_and_makes_paths_absolute():
    assert CaptionSettings(cache="s3://bucket/cache").cache == "s3://bucket/cache"
    assert CaptionSettings(cache="rel/cache").cache == os.path.abspath("rel/cache")
    with pytest.raises(ConfigError, match="cache_lease_s"):
        CaptionSettings(cache_lease_s=0)


# -- the store's edges: fsspec stores, odd files in the folder, exact values ---------------------


@pytest.fixture
def memory_url():
    fsspec = pytest.importorskip("fsspec")
    folder = f"/pinfeatures-{uuid.uuid4().hex}"
    yield f"memory://{folder}"
    fsspec.filesystem("memory").rm(folder, recursive=True)


class _SpyFs:
    """Wraps an fsspec filesystem, recording each call (name, *args); `exclusive=False` makes it a
    store without conditional create (opening with 'x' is not implemented)."""

    def __init__(self, fs, exclusive: bool = True):
        self.fs, self.exclusive, self.calls = fs, exclusive, []

    def __getattr__(self, name):
        method = getattr(self.fs, name)

        def call(*args, **kwargs):
            self.calls.append((name, *args))
            if name == "open" and "x" in args[1] and not self.exclusive:
                raise NotImplementedError("no conditional create")
            return method(*args, **kwargs)

        return call


def test_leases_and_blobs_on_an_fsspec_store(memory_url):
    a, b = CaptionCache(memory_url), CaptionCache(memory_url)
    fs = a.store.fs
    a.store.fs = spy = _SpyFs(fs)
    lease1, lease2 = a.store.path("leases", FP[:16], "s1"), a.store.path("leases", FP[:16], "s2")
    assert a.claim(["s1"], FP) == {"s1"}
    # created with an exclusive open, not the exists-then-write fallback
    assert [c[:3] for c in spy.calls if c[0] in ("open", "pipe_file")] == [("open", lease1, "xb")]
    a.release(["s1"], FP)  # deleted: another worker takes it at once
    assert not fs.exists(lease1) and b.claim(["s1"], FP) == {"s1"}
    # a stale lease (expired, another host) is renamed away and replaced, leaving no tomb
    fs.pipe_file(lease2, json.dumps(dict(owner="gone", host="elsewhere.example", pid=1, expires=0.0)).encode())
    assert a.claim(["s2"], FP) == {"s2"}
    assert json.loads(fs.cat_file(lease2))["owner"] == a.owner
    assert sorted(fs.ls(a.store.path("leases", FP[:16]), detail=False)) == [lease1, lease2]
    # a blob is written once: a second put of the same sha256 leaves the first bytes
    data = b"image bytes"
    sha = hashlib.sha256(data).hexdigest()
    a.put_blob(sha, data)
    a.put_blob(sha, b"other bytes")
    assert fs.cat_file(a.store.path("blobs", sha[:2], sha)) == data and b.get_blob(sha) == data


def test_a_store_without_conditional_create_falls_back_to_exists_then_write(memory_url):
    a, b = CaptionCache(memory_url), CaptionCache(memory_url)
    a.store.fs, b.store.fs = _SpyFs(a.store.fs, exclusive=False), _SpyFs(b.store.fs, exclusive=False)
    assert a.claim(["s1"], FP) == {"s1"}
    assert b.claim(["s1"], FP) == set()  # the lease exists: not overwritten
    lease = json.loads(a.store.fs.cat_file(a.store.path("leases", FP[:16], "s1")))
    assert lease["owner"] == a.owner and lease["pid"] == os.getpid()


def test_fsspec_listing_gives_names_without_folders_slashes_or_temporaries():
    class Listing:
        def ls(self, path, detail=True):
            assert (path, detail) == ("bucket/c/captions", False)
            return ["bucket/c/captions/2.parquet", "bucket/c/captions/sub/", "bucket/c/captions/.2.parquet.x.tmp",
                    "bucket/c/captions/partX", "bucket/c/captions/1.parquet"]

    store = _Store("memory://unused")
    store.fs, store.root = Listing(), "bucket/c"
    assert store.names(store.path("captions")) == ["1.parquet", "2.parquet", "partX", "sub"]


def test_fsspec_file_times_from_each_stores_field():
    infos = {
        "bucket/c/blobs/aa/1": {"size": 10, "mtime": 5.5},  # local
        "bucket/c/blobs/aa/2": {"size": 20, "LastModified": datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)},  # S3
        "bucket/c/blobs/bb/3": {"size": 30, "updated": 7},  # GCS
        "bucket/c/blobs/bb/4": {"size": None},  # no time, no size: 0
    }

    class Finding:
        def exists(self, path):
            return path == "bucket/c/blobs"

        def find(self, path, detail=False):
            assert path == "bucket/c/blobs"
            return dict(infos) if detail else list(infos)

    store = _Store("memory://unused")
    store.fs, store.root = Finding(), "bucket/c"
    assert store.files_with_size_mtime(store.path("blobs")) == [
        ("bucket/c/blobs/aa/1", 10, 5.5), ("bucket/c/blobs/aa/2", 20, 1767312000.0),
        ("bucket/c/blobs/bb/3", 30, 7.0), ("bucket/c/blobs/bb/4", 0, 0.0)]
    assert store.files_with_size_mtime(store.path("nothing")) == []


def test_blob_listing_skips_temporaries_and_files_gone_meanwhile(tmp_path, monkeypatch):
    cache = CaptionCache(tmp_path / "c")
    folder = tmp_path / "c" / "blobs" / "ab"
    folder.mkdir(parents=True)
    for name in (".a.tmp", "b", "c", "d"):
        (folder / name).write_bytes(b"x" * 10)
    walk, stat = os.walk, os.stat
    # listed in name order ('.a.tmp' first); 'b' is deleted between the listing and its stat
    monkeypatch.setattr(os, "walk", lambda top: ((d, ds, sorted(fs)) for d, ds, fs in walk(top)))
    monkeypatch.setattr(os, "stat", lambda p, *a, **kw: (_ for _ in ()).throw(FileNotFoundError(p)) if str(p).endswith("/b") else stat(p, *a, **kw))
    found = cache.store.files_with_size_mtime(cache.store.path("blobs"))
    monkeypatch.undo()
    assert [(os.path.basename(p), size) for p, size, _ in found] == [("c", 10), ("d", 10)]


def test_refresh_reads_each_new_part_once_and_skips_other_files(tmp_path):
    a, b = CaptionCache(tmp_path / "c"), CaptionCache(tmp_path / "c")
    a.put_many([("s1", FP, "one", "ok", "m", None)])
    b.put_many([("s2", FP, "two", "ok", "m", None)])
    (tmp_path / "c" / "captions" / "00000000000000000000-notes.txt").write_text("not a part")
    parts = sorted(p.name for p in (tmp_path / "c" / "captions").glob("*.parquet"))
    gone = "00000000000000000001-merged-away.parquet"  # listed, then deleted by compact() before the read
    names, read, reads = a.store.names, a.store.read, []
    a.store.names = lambda folder: sorted(names(folder) + [gone])
    a.store.read = lambda path: reads.append(path.rsplit("/", 1)[1]) or read(path)
    assert sorted(a.get_many(["s1", "s2"], FP)) == ["s1", "s2"]
    assert reads == [gone, parts[1]]  # not the notes, not a's own part: b's part once
    a.get_many(["s1"], FP)
    assert reads == [gone, parts[1], gone]


def test_records_come_back_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: 1234.5)
    cache = CaptionCache(tmp_path / "c")
    cache.put_many([("s1", FP, "one", "ok", "m", None)])
    cache.put_fetches([("http://x/a.png", "ok", "ab" * 32, None, False)])
    other = CaptionCache(tmp_path / "c")
    assert other.get_many(["s1", "s2"], FP) == {"s1": CachedCaption("s1", "one", "ok", "m", None, 1234.5)}
    assert other.get_fetches(["http://x/a.png"]) == {"http://x/a.png": CachedFetch("http://x/a.png", "ok", "ab" * 32, None, False)}
    assert pl.read_parquet(tmp_path / "c" / "fetches" / "*.parquet")["fetched_at"].to_list() == [1234.5]
    # a fingerprint's settings are kept once, whichever handle remembers it
    cache.remember_fingerprint(FP, '{"a": 1}')
    cache.remember_fingerprint(FP, '{"a": 1}')
    CaptionCache(tmp_path / "c").remember_fingerprint(FP, '{"a": 1}')
    assert pl.read_parquet(tmp_path / "c" / "fingerprints" / "*.parquet").rows() == [(FP, '{"a": 1}', 1234.5)]


def test_file_hashes_are_exact_and_memoised_across_handles(tmp_path, monkeypatch):
    import pinfeatures.caption.cache as cache_module

    one, two = tmp_path / "w1.bin", tmp_path / "w2.bin"
    one.write_bytes(b"weights one")
    two.write_bytes(b"weights two")
    for p in (one, two):
        os.utime(p, ns=(10**18, 10**18))  # same size and mtime: only the path tells them apart
    hashed, real = [], cache_module.sha256_of_file
    monkeypatch.setattr(cache_module, "sha256_of_file", lambda p: hashed.append(p.name) or real(p))
    a = CaptionCache(tmp_path / "c")
    digests = [a.file_sha256(one), a.file_sha256(two), a.file_sha256(one), CaptionCache(tmp_path / "c").file_sha256(two)]
    assert digests == [hashlib.sha256(b).hexdigest() for b in (b"weights one", b"weights two", b"weights one", b"weights two")]
    assert hashed == ["w1.bin", "w2.bin"]  # once each
    one.write_bytes(b"weights ONE")  # changed (new mtime): hashed again
    assert a.file_sha256(one) == hashlib.sha256(b"weights ONE").hexdigest() and hashed == ["w1.bin", "w2.bin", "w1.bin"]


def test_blob_bound_is_inclusive(tmp_path):
    cache = CaptionCache(tmp_path / "c", blob_max_bytes=100)
    blobs = [bytes([i]) * 100 for i in range(3)]  # each exactly the bound: kept
    shas = [hashlib.sha256(b).hexdigest() for b in blobs]
    for i, (sha, data) in enumerate(zip(shas, blobs)):
        cache.put_blob(sha, data)
        os.utime(tmp_path / "c" / "blobs" / sha[:2] / sha, (1000 + i, 1000 + i))
    assert cache.trim_blobs() == 2  # 300 -> 100 bytes: at the bound, the newest stays
    assert [cache.get_blob(s) for s in shas] == [None, None, blobs[2]]


def test_a_lease_without_a_readable_expiry_is_stale_at_any_time(tmp_path):
    cache = CaptionCache(tmp_path / "c")
    cache.clock = lambda: 0.5  # earlier than any expiry a lease could hold
    _lease(tmp_path / "c", "no_expiry", owner="x", host="elsewhere.example", pid=DEAD_PID)
    _lease(tmp_path / "c", "half_written").write_text('{"owner": ')
    assert cache.claim(["no_expiry", "half_written"], FP) == {"no_expiry", "half_written"}


def test_close_releases_only_the_leases_still_held(tmp_path):
    cache = CaptionCache(tmp_path / "c")
    cache.release(["s9"], "another fingerprint")  # never claimed: nothing to do
    assert cache.claim(["s1", "s2"], FP) == {"s1", "s2"}
    cache.release(["s1"], FP)
    read, reads = cache.store.read, []
    cache.store.read = lambda path: reads.append(path.rsplit("/", 1)[1]) or read(path)
    cache.close()
    assert reads == ["s2"] and not (tmp_path / "c" / "leases" / FP[:16] / "s2").exists()
