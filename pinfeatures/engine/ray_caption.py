"""The caption stage as a Ray Data pipeline (`--engine ray`): the same rows as caption.loop.caption_pins.

    unique refs ─► map_batches(_hash_batch)   CPU tasks: read + sha256 (statuses for bad refs), URLs
                                              through the cache's fetch records (nothing fetched twice)
        ─► driver: one ref per sha256, caption cache lookup (hits never reach the model)
        ─► map_batches(_decode_batch)         CPU tasks: read (URL bytes from the cache's blobs) +
                                              decode at the model's input size
        ─► map_batches(_CaptionActor)          actor pool: the model, `num_gpus` 1 per actor on
                                              GPU nodes (CPU actors when there is none), batches
                                              of caption.batch_size; each batch claims its images
                                              (leases), captions them and appends one cache part
        ─► driver: caption.loop's assembly (quality filter, statuses per pin)

A bad image is a row with its status (missing, unreadable, too_large, fetch_failed, ...); a model
failure on one image is `error` (caption.loop._caption_resilient: one poison image fails alone, a
CUDA OOM halves the batch); no row is ever dropped. Each sha256 reaches the model once per run:
the driver sends one ref per sha256, and an actor takes a lease on each image before captioning it
(caption.loop.claim_batch), so two runs sharing a cache never caption one image twice: an image
another worker holds is waited for (its part lands, or its lease lapses). The actor writes its
batch's part before releasing the leases, so a killed actor or driver loses at most the batches
in flight; Ray Data restarts a dead actor and runs its batch again, breaking the dead process's
leases at once (same host) or when they expire.
The CLIP check is not part of this pipeline (ConfigError); the local engine runs it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pinfeatures.caption.backends import ModelSpec, load_captioner, resolve_device, resolve_dtype, resolve_model
from pinfeatures.caption.images import ImageError, ImageSettings, decode_image, is_url, read_images
from pinfeatures.caption.loop import (_DEFER_POLL_S, _assemble, _caption_resilient, _check_pins, _RunState, caption_pins,
                                      claim_batch, hash_refs, open_cache, read_through_cache)
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.errors import ConfigError

KILL_ONCE_ENV = "PINFEATURES_TEST_KILL_ACTOR_ONCE"
"""Tests: a file path; the first actor call that finds the file deletes it and kills its process
once it holds its batch's leases."""


def _hash_batch(batch: dict[str, Any], images_root: str | None, cfg: CaptionSettings, cache_dir: str) -> dict[str, Any]:
    got = hash_refs(list(batch["ref"]), Path(images_root) if images_root else None, cfg, cache_dir)
    return {"ref": [g.ref for g in got], "status": [g.status for g in got], "sha256": [g.sha256 for g in got]}


def _decode_batch(batch: dict[str, Any], images_root: str | None, cfg: CaptionSettings, cache_dir: str,
                  target_size: int | None) -> dict[str, Any]:
    root = Path(images_root) if images_root else None
    refs = list(batch["ref"])
    settings = ImageSettings.from_caption_config(cfg)
    workers = max(1, cfg.fetch_concurrency)
    if any(is_url(r) for r in refs):  # the hash stage fetched them: their bytes come from the cache's blobs
        read = read_through_cache(refs, root, settings, open_cache(cfg, cache_dir), retry_failed=cfg.retry_failed, workers=workers,
                                  window=2 * workers, bytes_needed=set)  # every image's bytes
    else:
        read = read_images(refs, root, settings, workers=workers)
    shas, images, statuses, details = [], [], [], []
    for fetched in read:
        shas.append(fetched.sha256)
        try:
            if fetched.status != "ok":
                raise ImageError(fetched.status, fetched.detail)
            images.append(np.asarray(decode_image(fetched.data, max_pixels=cfg.max_image_pixels, target_size=target_size), dtype=np.uint8))
            statuses.append("ok")
            details.append(None)
        except ImageError as exc:
            images.append(np.zeros((1, 1, 3), dtype=np.uint8))
            statuses.append(exc.status)
            details.append(exc.detail)
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one image is that image's problem
            images.append(np.zeros((1, 1, 3), dtype=np.uint8))
            statuses.append("unreadable")
            details.append(f"{type(exc).__name__}: {exc}")
    return {"sha256": shas, "image": images, "status": statuses, "detail": details}


class _CaptionActor:
    """One loaded model and a handle on the shared cache; captions a batch of decoded images, keeping
    every row: claims each image (caption.loop.claim_batch), captions those it holds, appends one
    cache part and releases the leases; images other workers hold are waited for."""

    def __init__(self, spec: ModelSpec, cfg: CaptionSettings, device: str, dtype: str, cache_dir: str, started: float):
        self.captioner = load_captioner(spec, cfg, device=device, dtype=dtype)
        self.state = _RunState(batch_size=cfg.batch_size, started=started)
        self.cache = open_cache(cfg, cache_dir)
        self.spec, self.retry_failed = spec, cfg.retry_failed

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from PIL import Image

        shas = list(batch["sha256"])
        statuses = list(batch["status"])
        details = list(batch["detail"])
        captions: list[str | None] = [None] * len(statuses)
        hits = [False] * len(statuses)
        fp, name = self.spec.fingerprint, self.spec.name
        # decode failures are keyed by sha256 and cached like captions (a fetch failure has no sha256)
        rows = [(shas[i], fp, None, statuses[i], name, details[i]) for i in range(len(shas)) if statuses[i] != "ok" and shas[i]]
        waiting = [i for i, s in enumerate(statuses) if s == "ok"]
        model_seconds = 0.0
        while True:
            mine, landed = claim_batch(self.cache, [shas[i] for i in waiting], fp, retry_failed=self.retry_failed, started=self.state.started)
            marker = os.environ.get(KILL_ONCE_ENV)
            if marker and os.path.exists(marker):
                os.remove(marker)
                os._exit(1)  # a dead actor holding leases, as a kill -9 or a lost node leaves it
            for i in waiting:
                if shas[i] in landed:  # another worker's result
                    row = landed[shas[i]]
                    captions[i], statuses[i], details[i], hits[i] = row.caption, row.status, row.detail, True
            ok = [i for i in waiting if shas[i] in mine]
            t = time.perf_counter()
            results = _caption_resilient(self.captioner, [Image.fromarray(np.asarray(batch["image"][i], dtype=np.uint8)) for i in ok], self.state) if ok else []
            model_seconds += time.perf_counter() - t
            for i, (text, err) in zip(ok, results):
                if err is None:
                    captions[i] = text
                else:
                    statuses[i], details[i] = "error", err
                rows.append((shas[i], fp, captions[i], statuses[i], name, details[i]))
            self.cache.put_many(rows)  # one part for the batch, then the leases go
            self.cache.release(mine, fp)
            rows = []
            waiting = [i for i in waiting if shas[i] not in mine and shas[i] not in landed]
            if not waiting:
                break
            if not mine and not landed:  # nothing settled this round: give the other workers time
                time.sleep(_DEFER_POLL_S)
        seconds = [model_seconds] + [0.0] * (len(statuses) - 1)
        return {"sha256": shas, "caption": captions, "status": statuses, "detail": details, "hit": hits, "model_seconds": seconds}


def _target_size(spec: ModelSpec, cfg: CaptionSettings) -> int | None:
    """The model's input size, from its processor config alone (no weights), for JPEG draft decoding."""
    if spec.kind == "open_clip":
        return None  # open_clip's own preprocess resizes; decode at full size
    from transformers import AutoImageProcessor

    from pinfeatures.caption.backends import _target_size as processor_target_size

    try:
        return processor_target_size(AutoImageProcessor.from_pretrained(spec.path, local_files_only=True, trust_remote_code=bool(cfg.trust_remote_code)))
    except Exception:  # noqa: BLE001 - no image processor config: decode at full size
        return None


def caption_pins_ray(pins: pl.DataFrame, cfg: CaptionSettings, *, images_root: Path | None, cache_dir: Path,
                     quiet: bool = False, actors: int | None = None) -> tuple[pl.DataFrame, dict]:
    """caption.loop.caption_pins, run as a Ray Data pipeline (see the module docstring). Same rows, same stats keys."""
    import ray

    if not cfg.caption_model:
        return caption_pins(pins, cfg, images_root=images_root, cache_dir=cache_dir, quiet=quiet)
    if cfg.clip_check_model:
        raise ConfigError("caption.clip_check_model runs with --engine local only")
    t0 = time.perf_counter()
    pin_ids, refs = _check_pins(pins)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    gpus = int(ray.cluster_resources().get("GPU", 0))
    device = "cuda" if gpus else "cpu"
    if cfg.device not in ("auto", "cpu", "cuda") and not cfg.device.startswith("cuda"):
        device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    root = str(images_root) if images_root is not None else None
    cache_dir = str(cache_dir)
    state = _RunState(batch_size=cfg.batch_size)
    cache = open_cache(cfg, cache_dir)
    try:
        spec = resolve_model(cfg, file_hash=cache.file_sha256)
        cache.remember_fingerprint(spec.fingerprint, json.dumps(spec.identity, sort_keys=True, default=str))
        unique = [r for r in dict.fromkeys(refs) if r is not None]
        first_ref: dict[str, str] = {}
        if unique:
            hashed = ray.data.from_items([{"ref": r} for r in unique]).map_batches(
                _hash_batch, batch_size=256, fn_kwargs={"images_root": root, "cfg": cfg, "cache_dir": cache_dir}, num_cpus=1
            ).take_all()
            for row in hashed:
                state.ref_status[row["ref"]] = (row["status"], row["sha256"])
                if row["status"] == "ok":
                    first_ref.setdefault(row["sha256"], row["ref"])
        found = cache.get_many(list(first_ref), spec.fingerprint) if first_ref else {}
        todo = []
        for sha, ref in first_ref.items():
            row = found.get(sha)
            if row is not None and (row.status == "ok" or not cfg.retry_failed):
                state.sha_result[sha] = (row.caption, row.status)
                state.hit()
            else:
                todo.append(ref)
        if todo:
            n_actors = actors or max(1, gpus)
            captioned = ray.data.from_items([{"ref": r} for r in todo]).map_batches(
                _decode_batch, batch_size=cfg.batch_size, num_cpus=1,
                fn_kwargs={"images_root": root, "cfg": cfg, "cache_dir": cache_dir, "target_size": _target_size(spec, cfg)},
            ).map_batches(
                _CaptionActor, batch_size=cfg.batch_size, concurrency=n_actors, num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1,
                fn_constructor_kwargs={"spec": spec, "cfg": cfg, "device": device, "dtype": dtype, "cache_dir": cache_dir,
                                       "started": state.started},
                max_restarts=-1, max_task_retries=-1,
            ).take_all()
            for r in captioned:  # the actors stored them in the cache, a part per batch
                state.sha_result[r["sha256"]] = (r["caption"], r["status"])
                if r["hit"]:
                    state.hit()
                else:
                    state.captioned += int(r["status"] == "ok")
                    state.model_errors += int(r["status"] == "error")
                state.model_seconds += float(r["model_seconds"])
    finally:
        cache.close()
    frame, counts = _assemble(pin_ids, refs, state, cfg, None)
    seconds = time.perf_counter() - t0
    stats = {
        "model": spec.name, "backend": spec.kind, "fingerprint": spec.fingerprint, "engine": "ray",
        "settings": {"prompt": cfg.prompt, "batch_size": cfg.batch_size, "retry_failed": cfg.retry_failed, "weights": cfg.caption_weights,
                     "revision": cfg.revision, "actors": actors or max(1, gpus)},
        "device": device, "dtype": dtype, "pins": len(pin_ids), "unique_images": len(state.sha_result),
        "cache_hits": state.cache_hits, "captioned": state.captioned,
        "failures": {k: v for k, v in sorted(counts["status"].items()) if k != "ok"},
        "status_counts": dict(sorted(counts["status"].items())),
        "images_per_s": round(state.captioned / seconds, 3) if state.captioned and seconds > 0 else None,
        "model_seconds": round(state.model_seconds, 3), "seconds": round(seconds, 3),
    }
    return frame, stats
