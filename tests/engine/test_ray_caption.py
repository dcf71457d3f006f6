"""The Ray Data caption pipeline (--engine ray): the local loop's rows, with an actor killed mid-run."""

from __future__ import annotations

import io
import os
from pathlib import Path

import polars as pl
import pytest

ray = pytest.importorskip("ray")

from PIL import Image  # noqa: E402

from pinfeatures.caption.cache import CaptionCache  # noqa: E402
from pinfeatures.caption.loop import caption_pins  # noqa: E402
from pinfeatures.caption.settings import CaptionSettings  # noqa: E402
from pinfeatures.engine.ray_caption import KILL_ONCE_ENV, caption_pins_ray  # noqa: E402


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
    pins = pl.DataFrame({"pin_id": [f"p{i:02d}" for i in range(len(refs))], "image": refs}, schema={"pin_id": pl.Utf8, "image": pl.Utf8})
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=6, batch_size=4)
    local, local_stats = caption_pins(pins, cfg, images_root=root, cache_dir=tmp_path / "cache_local", quiet=True)

    local_ray.write_text("kill the first actor call")
    frame, stats = caption_pins_ray(pins, cfg, images_root=root, cache_dir=tmp_path / "cache_ray", quiet=True)
    assert not local_ray.exists()  # an actor did die mid-batch
    assert frame.equals(local)  # every pin, in order, the same caption and status
    assert stats["status_counts"] == local_stats["status_counts"]
    assert stats["status_counts"]["ok"] == 15 and {"unreadable", "missing", "outside_root"} <= set(stats["status_counts"])
    assert stats["unique_images"] == local_stats["unique_images"] and stats["captioned"] == 11  # 3 repeated bytes captioned once

    # a rebuild captions nothing: every sha256 comes from the cache
    again, again_stats = caption_pins_ray(pins, cfg, images_root=root, cache_dir=tmp_path / "cache_ray", quiet=True)
    assert again.equals(local) and again_stats["captioned"] == 0 and again_stats["cache_hits"] > 0
    with CaptionCache(tmp_path / "cache_ray") as cache:
        assert cache.count() == local_stats["unique_images"]
