"""The Ray Data caption pipeline (--engine ray): the local loop's rows, with an actor killed mid-run
holding its leases; the actor's lease-and-part logic run directly (no Ray start-up)."""

from __future__ import annotations

import io
import json
import os
import socket
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ray = pytest.importorskip("ray")

from PIL import Image  # noqa: E402

from pinfeatures.caption.backends import resolve_model  # noqa: E402
from pinfeatures.caption.cache import CaptionCache  # noqa: E402
from pinfeatures.caption.loop import caption_pins, claim_batch  # noqa: E402
from pinfeatures.caption.settings import CaptionSettings  # noqa: E402
from pinfeatures.engine.ray_caption import KILL_ONCE_ENV, _CaptionActor, caption_pins_ray  # noqa: E402
from tests.image_server import ImageServer  # noqa: E402


def image_bytes(color: tuple[int, int, int], fmt: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    marker = tmp_path_factory.mktemp("kill") / "kill-once"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {KILL_ONCE_ENV: str(marker), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
    yield marker
    ray.shutdown()


def test_same_rows_as_the_local_loop_with_an_actor_killed(tmp_path: Path, local_ray: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    refs = []
    for i in range(14):  # 14 images, 3 of them the same bytes under other names (repins)
        color = (20 * (i % 11), 100, 255 - 20 * (i % 11))
        (root / f"{i}.jpg").write_bytes(image_bytes(color, "JPEG"))
        refs.append(f"{i}.jpg")
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "empty.png").write_bytes(b"")
    refs += ["broken.jpg", "empty.png", "nope.jpg", None, "../outside.jpg", "0.jpg"]
    server = ImageServer({"/web.png": image_bytes((1, 2, 3), "PNG"), "/web-copy.png": (root / "5.jpg").read_bytes()},
                         lifetime_s=600).start()
    refs += [server.url("/web.png"), server.url("/web-copy.png"), server.url("/gone.png")]  # new bytes, a repin's bytes, a 404
    pins = pl.DataFrame({"pin_id": [f"p{i:02d}" for i in range(len(refs))], "image": refs}, schema={"pin_id": pl.Utf8, "image": pl.Utf8})
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=4, allow_private_addresses=True, fetch_retries=0)
    try:
        local, local_stats = caption_pins(pins, cfg, images_root=root, cache_dir=tmp_path / "cache_local", quiet=True)

        server.hits.clear()
        local_ray.write_text("kill the first actor call once it holds its leases")
        frame, stats = caption_pins_ray(pins, cfg, images_root=root, cache_dir=tmp_path / "cache_ray", quiet=True)
        assert dict(server.hits) == {"/web.png": 1, "/web-copy.png": 1, "/gone.png": 1}  # decoding takes the cached bytes
        assert not local_ray.exists()  # an actor did die mid-batch
        assert frame.equals(local)  # every pin, in order, the same caption and status
        assert stats["status_counts"] == local_stats["status_counts"]
        assert stats["status_counts"]["ok"] == 17 and {"unreadable", "missing", "outside_root", "fetch_failed"} <= set(stats["status_counts"])
        assert stats["unique_images"] == local_stats["unique_images"] and stats["captioned"] == 12  # repeated bytes captioned once
        # the actors wrote the cache: a part per batch, each image once, and the dead actor's leases were taken over
        cache_dir = tmp_path / "cache_ray"
        parts = [pl.read_parquet(p) for p in sorted((cache_dir / "captions").glob("*.parquet"))]
        assert all(0 < p.height <= cfg.batch_size for p in parts) and len(parts) >= 4
        assert pl.concat(parts)["sha256"].n_unique() == sum(p.height for p in parts) == local_stats["unique_images"]
        assert [p for p in (cache_dir / "leases").rglob("*") if p.is_file()] == []

        # a rebuild fetches and captions nothing: every URL from the fetch records, every sha256 from the cache
        server.hits.clear()
        again, again_stats = caption_pins_ray(pins, cfg, images_root=root, cache_dir=cache_dir, quiet=True)
        assert again.equals(local) and again_stats["captioned"] == 0 and again_stats["cache_hits"] == local_stats["unique_images"]
        assert dict(server.hits) == {}
    finally:
        server.stop()
    with CaptionCache(cache_dir) as cache:
        assert cache.count() == local_stats["unique_images"]


def test_an_actor_batch_claims_its_images_and_appends_one_part(tmp_path: Path) -> None:
    """_CaptionActor without Ray: an image another run already captioned is taken from the cache, a
    stale lease is taken over, the rest captioned; one part for the batch, no lease left."""
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=4)
    spec = resolve_model(cfg)
    other = CaptionCache(tmp_path / "cache")
    other.put_many([("b" * 64, spec.fingerprint, "from another run", "ok", spec.name, None)])
    assert other.claim(["c" * 64], spec.fingerprint) == {"c" * 64}
    lease = tmp_path / "cache" / "leases" / spec.fingerprint[:16] / ("c" * 64)
    lease.write_text(json.dumps({**json.loads(lease.read_text()), "expires": 0}))  # its owner stopped renewing: stale
    actor = _CaptionActor(spec, cfg, "cpu", "float32", str(tmp_path / "cache"), started=0.0)
    seen = []
    inner = actor.captioner.caption
    actor.captioner.caption = lambda images: (seen.append(len(images)), inner(images))[1]
    pixels = [np.full((32, 32, 3), v, dtype=np.uint8) for v in (10, 90, 170, 0, 0)]
    out = actor({"sha256": ["a" * 64, "b" * 64, "c" * 64, "d" * 64, None], "image": pixels,
                 "status": ["ok", "ok", "ok", "unreadable", "fetch_failed"], "detail": [None, None, None, "zero bytes", "HTTP 404"]})
    assert seen == [2]  # a and c; b came from the cache
    assert out["status"] == ["ok", "ok", "ok", "unreadable", "fetch_failed"] and out["hit"] == [False, True, False, False, False]
    assert out["caption"][1] == "from another run" and out["caption"][0] and out["caption"][2]
    parts = sorted((tmp_path / "cache" / "captions").glob("*.parquet"))
    assert len(parts) == 2  # the other run's and this batch's
    assert sorted(pl.read_parquet(parts[-1]).select("sha256", "status").rows()) == [("a" * 64, "ok"), ("c" * 64, "ok"), ("d" * 64, "unreadable")]
    assert [p for p in (tmp_path / "cache" / "leases").rglob("*") if p.is_file()] == []


def test_claim_batch_leaves_a_live_workers_images_and_finds_its_results(tmp_path: Path) -> None:
    fp = "f" * 64
    a, b = CaptionCache(tmp_path / "c"), CaptionCache(tmp_path / "c")
    assert claim_batch(a, ["s1", "s2"], fp, retry_failed=False, started=0.0) == ({"s1", "s2"}, {})
    assert claim_batch(b, ["s1", "s2", "s3"], fp, retry_failed=False, started=0.0) == ({"s3"}, {})  # a holds s1, s2
    a.put_many([("s1", fp, "one", "ok", "m", None), ("s2", fp, None, "unreadable", "m", "bad")])
    a.release(["s1", "s2"], fp)
    mine, landed = claim_batch(b, ["s1", "s2"], fp, retry_failed=False, started=0.0)
    assert mine == set() and {k: (r.caption, r.status) for k, r in landed.items()} == {"s1": ("one", "ok"), "s2": (None, "unreadable")}
    # retry_failed: an old failure is captioned again, one written in this run is not
    mine, landed = claim_batch(b, ["s2"], fp, retry_failed=True, started=1e18)
    assert (mine, landed) == ({"s2"}, {})
    b.release(mine, fp)
    mine, landed = claim_batch(b, ["s2"], fp, retry_failed=True, started=0.0)
    assert mine == set() and set(landed) == {"s2"}
    assert [p.name for p in (tmp_path / "c" / "leases").rglob("*") if p.is_file()] == ["s3"]  # b still holds s3
    assert socket.gethostname() in (tmp_path / "c" / "leases" / fp[:16] / "s3").read_text()
