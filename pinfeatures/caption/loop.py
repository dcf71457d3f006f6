"""The caption stage: one VLM caption per unique Pin image, cached, resumable, robust.

In:  pins (`pin_id` Utf8, `image` Utf8 nullable: a path under `images_root` or an http(s) URL),
     a CaptionSettings, the images root, the cache folder.
Out: one row per input pin, in input order: `pin_id`, `caption` (Utf8|null),
     `caption_status` (Utf8), `image_sha256` (Utf8|null); and the manifest's `caption`
     section (model, fingerprint, counts, failures, throughput).

How a run goes:

    unique image refs ─► read_images (threads: local reads + bounded HTTP) ─► sha256
        ─► cache lookup by (sha256, fingerprint), chunk by chunk; each sha seen once
        ─► misses: decode in a thread pool (EXIF, RGB, JPEG draft at the model's size)
        ─► bounded queue ─► main thread: batches of `batch_size` -> claim (lease) -> model.generate
        ─► one cache part per batch (so a kill loses at most the batch in flight)

URLs go through the cache's fetch records first: a URL fetched before is not fetched again
(its sha256 is known; its bytes come from the cache's blobs when the caption is still
missing). Workers sharing a cache claim each image before captioning it; an image another
worker holds is set aside and taken from that worker's part when it lands (or captioned here
once the other's lease expires), so no image is captioned twice in one run.

The reading/decoding thread runs ahead of the model (the queue is the prefetch), so the
GPU does not wait on I/O. Pins that share an image (repins) share its caption: the
model sees each unique image once per fingerprint. On CUDA out-of-memory the batch is
halved for the rest of the run. A bad image, a failed fetch or a model error on one
image becomes that pin's `caption_status`; the run goes on.

Quality: the cache stores the model's raw caption; the degenerate filter
(caption_quality.clean_caption) runs on the way out, so changing the filter needs no
recaptioning. The optional CLIP check scores (image, caption) once per fingerprint and
stores the score in the cache too.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pinfeatures.caption.backends import (
    Captioner,
    ModelSpec,
    generation_settings,
    load_captioner,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from pinfeatures.caption.cache import CachedCaption, CaptionCache
from pinfeatures.caption.images import FetchedImage
from pinfeatures.caption.quality import ClipChecker, clean_caption
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.errors import InputError, ModelError

OUTPUT_SCHEMA = {"pin_id": pl.Utf8, "caption": pl.Utf8, "caption_status": pl.Utf8, "image_sha256": pl.Utf8}
IMAGE_FAILURES = ("unreadable", "too_large")  # decode failures, keyed by sha256 and cached
_LOOKUP_CHUNK = 256
_DEFER_POLL_S = 0.2
CACHED_FETCH_STATUSES = ("ok", "fetch_failed")
"""URL fetch results the cache keeps. The others depend on this run's settings (blocked_address,
too_large) or need no request (bad_url), so they are decided anew each run."""


@dataclass
class _Work:
    """One unique image headed for the model: decode future, and what to do with it."""

    sha: str
    decoded: Future
    need_caption: bool
    cached_caption: str | None = None


@dataclass
class _RunState:
    ref_status: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # ref -> (status, sha)
    sha_result: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # sha -> (raw caption, status)
    clip_scores: dict[str, float] = field(default_factory=dict)
    deferred: list[_Work] = field(default_factory=list)
    """Images another worker was captioning when this one reached them."""
    started: float = field(default_factory=time.time)
    cache_hits: int = 0
    captioned: int = 0
    model_errors: int = 0
    batch_size: int = 0
    model_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    """Counters are bumped from the loader thread (hits) and the model thread (scoring hits)."""

    def hit(self) -> None:
        with self.lock:
            self.cache_hits += 1


def caption_pins(
    pins: pl.DataFrame,
    cfg: CaptionSettings,
    *,
    images_root: Path | None,
    cache_dir: str | Path,
    quiet: bool = False,
    captioner: Captioner | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Caption the pins' images (see the module docstring).

    `captioner`: an already loaded captioner for `cfg` (benchmarks and tests reuse one across
    runs); by default the model is loaded only if some image is not in the cache.
    cfg.caption_model None -> every pin `skipped`, nothing read.
    Raises InputError (bad pins frame), ConfigError (bad settings), ModelError (model not loadable).
    """
    t0 = time.perf_counter()
    pin_ids, refs = _check_pins(pins)
    if not cfg.caption_model:
        out = pl.DataFrame(
            {"pin_id": pin_ids, "caption": [None] * len(pin_ids), "caption_status": ["skipped"] * len(pin_ids),
             "image_sha256": [None] * len(pin_ids)},
            schema=OUTPUT_SCHEMA,
        )
        stats = _stats_skipped(len(pin_ids), time.perf_counter() - t0)
        return out, stats

    device = captioner.device if captioner is not None else resolve_device(cfg.device)
    dtype = captioner.dtype if captioner is not None else resolve_dtype(cfg.dtype, device)
    cache = open_cache(cfg, cache_dir)
    try:
        spec = resolve_model(cfg, file_hash=cache.file_sha256)
        cache.remember_fingerprint(spec.fingerprint, json.dumps(spec.identity, sort_keys=True, default=str))
        clip = None
        if cfg.clip_check_model:
            if cfg.clip_check_weights is None:
                raise ModelError("clip_check_model needs clip_check_weights (a local weights file)")
            clip = ClipChecker(cfg.clip_check_model, cfg.clip_check_weights, device=device)
        state = _RunState(batch_size=cfg.batch_size)
        _run(refs, cfg, spec, images_root, cache, state, captioner, device, dtype, clip, quiet)
    finally:
        cache.close()
    frame, counts = _assemble(pin_ids, refs, state, cfg, clip)
    seconds = time.perf_counter() - t0
    failures = {k: v for k, v in sorted(counts["status"].items()) if k not in ("ok",)}
    stats = {
        "model": spec.name,
        "backend": spec.kind,
        "fingerprint": spec.fingerprint,
        "settings": {
            **generation_settings(cfg),
            "prompt": cfg.prompt,
            "batch_size": cfg.batch_size,
            "final_batch_size": state.batch_size,
            "retry_failed": cfg.retry_failed,
            "weights": cfg.caption_weights,
            "revision": cfg.revision,
        },
        "device": device,
        "dtype": dtype,
        "pins": len(pin_ids),
        "unique_images": len(state.sha_result),
        "cache_hits": state.cache_hits,
        "captioned": state.captioned,
        "failures": failures,
        "status_counts": dict(sorted(counts["status"].items())),
        # wall-clock throughput of the stage (reading, decoding and the model together)
        "images_per_s": round(state.captioned / seconds, 3) if state.captioned and seconds > 0 else None,
        "model_seconds": round(state.model_seconds, 3),
        "seconds": round(seconds, 3),
    }
    if clip is not None:
        stats["clip_check"] = {
            "model": cfg.clip_check_model,
            "min_score": cfg.clip_min_score,
            "flagged": counts["flagged"],
            "dropped": counts["flagged"] if cfg.drop_flagged else 0,
        }
    return frame, stats


# -- input checks ---------------------------------------------------------------------------


def _check_pins(pins: pl.DataFrame) -> tuple[list[str], list[str | None]]:
    if not isinstance(pins, pl.DataFrame):
        raise InputError(f"caption_pins expects a Polars DataFrame, got {type(pins).__name__}")
    for col in ("pin_id", "image"):
        if col not in pins.columns:
            raise InputError("missing required column", file="pins", column=col)
    if pins.schema["pin_id"] not in (pl.Utf8, pl.String):
        if pins.schema["pin_id"].is_integer():
            pins = pins.with_columns(pl.col("pin_id").cast(pl.Utf8))  # ids are compared as strings
        else:
            raise InputError(f"expected string ids, found type {pins.schema['pin_id']}", file="pins", column="pin_id")
    if pins.schema["image"] not in (pl.Utf8, pl.String, pl.Null):
        raise InputError(f"expected text (path or URL), found type {pins.schema['image']}", file="pins", column="image")
    nulls = pins["pin_id"].null_count()
    if nulls:
        row = int(pins.with_row_index("_i").filter(pl.col("pin_id").is_null())["_i"][0]) + 1
        raise InputError(f"{nulls} null pin_id value(s)", file="pins", column="pin_id", row=row)
    refs = [r if r is None or r.strip() else None for r in pins["image"].cast(pl.Utf8).to_list()]
    return pins["pin_id"].to_list(), refs


# -- the pipeline ---------------------------------------------------------------------------------


class _Progress:
    """tqdm bar over unique images with images/s (model) and cache hit rate; silent when quiet."""

    def __init__(self, total: int, quiet: bool):
        self.lock = threading.Lock()
        self.bar = None
        self.t0 = time.perf_counter()
        if not quiet:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="caption", unit="img", dynamic_ncols=True)

    def update(self, n: int, state: _RunState) -> None:
        if self.bar is None or n == 0:
            return
        with self.lock:
            self.bar.update(n)
            seen = state.cache_hits + state.captioned
            rate = state.captioned / state.model_seconds if state.model_seconds > 0 else 0.0
            self.bar.set_postfix_str(
                f"{rate:.1f} img/s, hit {100.0 * state.cache_hits / seen if seen else 0.0:.0f}%", refresh=False
            )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


_DONE = object()


def _run(refs, cfg, spec: ModelSpec, images_root, cache: CaptionCache, state: _RunState,
         captioner: Captioner | None, device: str, dtype: str, clip: ClipChecker | None, quiet: bool) -> None:
    from pinfeatures.caption.images import ImageSettings, decode_image

    settings = ImageSettings.from_caption_config(cfg)
    unique_refs = [r for r in dict.fromkeys(refs) if r is not None]
    progress = _Progress(len(unique_refs), quiet)
    # Prefetch depth: enough decoded images for two batches ahead of the model.
    work_q: queue.Queue = queue.Queue(maxsize=max(2, 2 * cfg.batch_size))
    stop = threading.Event()
    decode_pool = ThreadPoolExecutor(max_workers=max(1, cfg.loader_workers), thread_name_prefix="pinfeatures-decode")
    holder: dict[str, Any] = {"captioner": captioner}
    target_size: list[int | None] = [captioner.target_size if captioner is not None else None]
    sized = threading.Event()
    if captioner is not None:
        sized.set()

    def decode(data: bytes):
        sized.wait()  # the model's input size decides the JPEG draft scale
        return decode_image(data, max_pixels=cfg.max_image_pixels, target_size=target_size[0])

    def put(item) -> bool:
        while not stop.is_set():
            try:
                work_q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def producer() -> None:
        try:
            seen: set[str] = set()
            chunk: list[tuple[str, bytes]] = []

            def flush() -> bool:
                shas = [s for s, _ in chunk if s not in seen]
                found = cache.get_many(shas, spec.fingerprint) if shas else {}
                scores = cache.get_clip_scores(shas, spec.fingerprint, clip.fingerprint) if clip and shas else {}
                done_now = 0
                for sha, data in chunk:
                    if sha in seen:  # another ref with the same bytes: already handled
                        done_now += 1
                        continue
                    seen.add(sha)
                    row = found.get(sha)
                    if row is not None and (row.status == "ok" or not cfg.retry_failed):
                        state.sha_result[sha] = (row.caption, row.status)
                        state.hit()  # a hit even when its CLIP score is still to compute
                        _text, qstatus = clean_caption(row.caption) if row.status == "ok" else (None, row.status)
                        if clip is not None and qstatus == "ok":
                            if sha in scores:
                                state.clip_scores[sha] = scores[sha]
                            else:  # cached caption, no score under this CLIP model yet: score it
                                if not put(_Work(sha, decode_pool.submit(decode, data), False, row.caption)):
                                    return False
                                continue
                        done_now += 1
                    else:
                        if not put(_Work(sha, decode_pool.submit(decode, data), True)):
                            return False
                progress.update(done_now, state)
                chunk.clear()
                return True

            workers = max(1, cfg.fetch_concurrency)
            # in-order results: a wider window keeps the model fed while one slow URL is retried
            window = max(2 * workers, 2 * cfg.batch_size)

            def bytes_needed(shas: list[str]) -> set[str]:
                """Known images whose caption (and CLIP score, with the check on) is not cached yet."""
                have = {sha for sha, row in cache.get_many(shas, spec.fingerprint).items() if row.status == "ok" or not cfg.retry_failed}
                if clip is not None:
                    have &= set(cache.get_clip_scores(list(have), spec.fingerprint, clip.fingerprint))
                return set(shas) - have

            fetches = read_through_cache(unique_refs, images_root, settings, cache, retry_failed=cfg.retry_failed,
                                         workers=workers, window=window, bytes_needed=bytes_needed)
            for fetched in fetches:
                if stop.is_set():
                    return
                state.ref_status[fetched.ref] = (fetched.status, fetched.sha256)
                if fetched.status != "ok":
                    progress.update(1, state)
                    continue
                chunk.append((fetched.sha256, fetched.data))
                if len(chunk) >= _LOOKUP_CHUNK and not flush():
                    return
            if chunk:
                flush()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            put(exc)
        finally:
            put(_DONE)

    thread = threading.Thread(target=producer, name="pinfeatures-caption-loader", daemon=True)
    thread.start()
    try:
        pending: list[_Work] = []
        finished = False
        while not finished:
            item = work_q.get()
            if isinstance(item, BaseException):
                raise item
            if item is _DONE:
                finished = True
            else:
                if item.need_caption and holder["captioner"] is None:
                    holder["captioner"] = load_captioner(spec, cfg, device=device, dtype=dtype)
                    target_size[0] = holder["captioner"].target_size
                    sized.set()
                elif not item.need_caption:
                    sized.set()  # scoring only: decode at full size
                pending.append(item)
            while len(pending) >= state.batch_size or (finished and pending):
                batch, pending = pending[: state.batch_size], pending[state.batch_size:]
                _process_batch(batch, holder["captioner"], spec, cache, state, clip, cfg)
                progress.update(len(batch), state)
        while state.deferred:  # images other workers were captioning: their parts, or ours once their leases lapse
            waiting = len(state.deferred)
            batch, state.deferred = state.deferred[: state.batch_size], state.deferred[state.batch_size:]
            _process_batch(batch, holder["captioner"], spec, cache, state, clip, cfg)
            if len(state.deferred) >= waiting:  # nothing settled this round: give the others time
                time.sleep(_DEFER_POLL_S)
    finally:
        stop.set()
        sized.set()
        thread.join(timeout=30)
        decode_pool.shutdown(wait=True, cancel_futures=True)
        progress.close()


def _process_batch(batch: list[_Work], captioner: Captioner | None, spec: ModelSpec, cache: CaptionCache,
                   state: _RunState, clip: ClipChecker | None, cfg) -> None:
    """Decode results -> model -> cache, one transaction for the batch's rows."""
    from pinfeatures.caption.images import ImageError

    rows: list[tuple[str, str, str | None, str, str, str | None]] = []
    to_caption: list[tuple[str, Any]] = []
    scored: list[tuple[str, Any, str | None]] = []
    for w in batch:
        try:
            img = w.decoded.result()
        except ImageError as exc:
            state.sha_result[w.sha] = (None, exc.status)
            rows.append((w.sha, spec.fingerprint, None, exc.status, spec.name, exc.detail))
            continue
        except Exception as exc:  # noqa: BLE001 - a decoder bug on one image is that image's problem
            state.sha_result[w.sha] = (None, "unreadable")
            rows.append((w.sha, spec.fingerprint, None, "unreadable", spec.name, f"{type(exc).__name__}: {exc}"))
            continue
        if w.need_caption:
            to_caption.append((w.sha, img))
        else:
            state.sha_result[w.sha] = (w.cached_caption, "ok")
            scored.append((w.sha, img, w.cached_caption))
    claimed: set[str] = set()
    if to_caption:
        to_caption, claimed = _claim(to_caption, batch, spec, cache, state, cfg, scored)
    if to_caption:
        t = time.perf_counter()
        results = _caption_resilient(captioner, [img for _, img in to_caption], state)
        state.model_seconds += time.perf_counter() - t
        for (sha, img), (text, err) in zip(to_caption, results):
            if err is None:
                state.sha_result[sha] = (text, "ok")
                state.captioned += 1
                rows.append((sha, spec.fingerprint, text, "ok", spec.name, None))
                scored.append((sha, img, text))
            else:
                state.sha_result[sha] = (None, "error")
                state.model_errors += 1
                rows.append((sha, spec.fingerprint, None, "error", spec.name, err))
    cache.put_many(rows)
    cache.release(claimed, spec.fingerprint)  # after the part has landed: others now find the rows
    if clip is not None and scored:
        keep = [(sha, img, clean_caption(text)[0]) for sha, img, text in scored]
        keep = [(sha, img, text) for sha, img, text in keep if text is not None]
        if keep:
            scores = clip.scores([img for _, img, _ in keep], [text for _, _, text in keep])
            for (sha, _, _), s in zip(keep, scores):
                state.clip_scores[sha] = float(s)
            cache.put_clip_scores([(sha, spec.fingerprint, clip.fingerprint, float(s)) for (sha, _, _), s in zip(keep, scores)])


def _claim(to_caption: list[tuple[str, Any]], batch: list[_Work], spec: ModelSpec, cache: CaptionCache,
           state: _RunState, cfg, scored: list) -> tuple[list[tuple[str, Any]], set[str]]:
    """The images of `to_caption` this worker now holds a lease on and must caption, and the leases
    (claim_batch); an image whose result landed meanwhile is a hit, one another live worker holds
    goes to state.deferred."""
    mine, landed = claim_batch(cache, [sha for sha, _ in to_caption], spec.fingerprint, retry_failed=cfg.retry_failed,
                               started=state.started)
    work = {w.sha: w for w in batch}
    kept: list[tuple[str, Any]] = []
    for sha, img in to_caption:
        row = landed.get(sha)
        if row is not None:
            state.sha_result[sha] = (row.caption, row.status)
            state.hit()
            if row.status == "ok":
                scored.append((sha, img, row.caption))
        elif sha in mine:
            kept.append((sha, img))
        else:
            state.deferred.append(work[sha])
    return kept, mine


def claim_batch(cache: CaptionCache, shas: list[str], fingerprint: str, *, retry_failed: bool,
                started: float) -> tuple[set[str], dict[str, CachedCaption]]:
    """Of the images a worker is about to caption: those it now holds a lease on and must caption,
    and those whose result landed meanwhile (sha256 -> the cached row). The rest are held by another
    live worker: ask again later (their part lands, or their lease lapses).

    Claim first, then look again: a worker writes its part before releasing its leases, so a result
    that landed between the caller's lookup and this claim is found here and not captioned twice.
    A landed failure counts even with `retry_failed` when this run wrote it (created after `started`).
    The caller appends its results as one part, then releases its leases (CaptionCache.release).
    """
    claimed = cache.claim(shas, fingerprint)
    landed = {sha: row for sha, row in cache.get_many(shas, fingerprint).items()
              if row.status == "ok" or not retry_failed or row.created_at >= started}
    mine = claimed - set(landed)
    cache.release(claimed - mine, fingerprint)
    return mine, landed


def open_cache(cfg: CaptionSettings, cache_dir: str | Path | None = None) -> CaptionCache:
    """The cache of `cache_dir` (default cfg.cache) with cfg's lease length and blob bound."""
    return CaptionCache(cache_dir or cfg.cache, lease_s=cfg.cache_lease_s, blob_max_bytes=cfg.fetch_cache_max_bytes)


def hash_refs(refs: list[str], images_root, cfg: CaptionSettings, cache_dir: str | Path | None = None) -> list[FetchedImage]:
    """Status and sha256 of each ref (no bytes), in no particular order. URLs go through the cache's
    fetch records (read_through_cache), so a rebuild downloads nothing fetched before; refs without
    a URL leave the cache alone."""
    from pinfeatures.caption.images import ImageSettings, hash_images, is_url

    settings = ImageSettings.from_caption_config(cfg)
    if not any(is_url(r) for r in refs):
        return list(hash_images(refs, images_root, settings))
    workers = max(1, cfg.fetch_concurrency)
    with open_cache(cfg, cache_dir) as cache:  # closing trims the blobs the new fetches added
        return [FetchedImage(f.ref, f.status, None, f.sha256, f.detail)
                for f in read_through_cache(refs, images_root, settings, cache, retry_failed=cfg.retry_failed, workers=workers,
                                            window=2 * workers)]


def read_through_cache(refs: list[str], images_root, settings, cache: CaptionCache, *, retry_failed: bool, workers: int,
                       window: int, bytes_needed: Callable[[list[str]], set[str]] | None = None) -> Iterator[FetchedImage]:
    """images.read_images with the cache's URL fetch records in front: one FetchedImage per ref, in
    no particular order (records first, then reads in input order).

    A URL with a usable record (`ok`, or a cached failure unless `retry_failed`; one fetched with
    private addresses allowed only when they still are) is not fetched: it yields the record's
    sha256, with the bytes from the blob store when `bytes_needed` (called once with the sha256s
    the records give) asks for them, or a fetch when those were trimmed. `bytes_needed` None: the
    caller wants hashes only (build.run's sha256-keyed captions). New fetch results and their bytes
    are recorded a chunk at a time, so a rebuild fetches nothing that was fetched before.
    """
    from pinfeatures.caption.images import is_url, read_images

    urls = [r for r in refs if is_url(r)]
    known = {u: f for u, f in (cache.get_fetches(urls) if urls else {}).items()
             if (f.status == "ok" or not retry_failed) and (settings.allow_private_addresses or not f.allow_private)}
    shas = list(dict.fromkeys(f.sha256 for f in known.values() if f.status == "ok"))
    needed = bytes_needed(shas) if bytes_needed is not None and shas else set()
    to_read = []
    for ref in refs:
        rec = known.get(ref)
        if rec is None:
            to_read.append(ref)
        elif rec.status != "ok":
            yield FetchedImage(ref, rec.status, None, None, rec.detail)
        elif rec.sha256 not in needed:
            yield FetchedImage(ref, "ok", None, rec.sha256)
        elif (data := cache.get_blob(rec.sha256)) is not None:
            yield FetchedImage(ref, "ok", data, rec.sha256)
        else:
            to_read.append(ref)
    new: list[tuple] = []
    for fetched in read_images(to_read, images_root, settings, workers=workers, max_in_flight=window):
        if is_url(fetched.ref) and fetched.status in CACHED_FETCH_STATUSES:
            if fetched.status == "ok":
                cache.put_blob(fetched.sha256, fetched.data)  # bytes before the record that points at them
            new.append((fetched.ref, fetched.status, fetched.sha256, fetched.detail, settings.allow_private_addresses))
            if len(new) >= _LOOKUP_CHUNK:
                cache.put_fetches(new)
                new = []
        yield fetched
    cache.put_fetches(new)


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _caption_resilient(captioner: Captioner, images: list, state: _RunState) -> list[tuple[str | None, str | None]]:
    """(caption, None) or (None, error detail) per image.

    CUDA OOM: halve the batch (for the rest of the run too) and go on. Any other failure: retry
    the images one by one so one poison image fails alone; if every image fails alone, the model
    itself is broken and the run stops with a ModelError rather than caching garbage.
    """
    import torch

    try:
        return [(t, None) for t in captioner.caption(images)]
    except Exception as exc:  # noqa: BLE001
        if _is_oom(exc):
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if len(images) == 1:
                return [(None, "out of memory on a single image")]
            half = max(1, len(images) // 2)
            state.batch_size = max(1, min(state.batch_size, half))
            return _caption_resilient(captioner, images[:half], state) + _caption_resilient(captioner, images[half:], state)
        if len(images) == 1:
            return [(None, f"{type(exc).__name__}: {str(exc)[:300]}")]
        first = exc
    out = [_caption_resilient(captioner, [im], state)[0] for im in images]
    if all(err is not None for _, err in out):
        raise ModelError(f"caption model failed on every image of a batch: {type(first).__name__}: {first}")
    return out


# -- output ---------------------------------------------------------------------------------------


def _assemble(pin_ids: list[str], refs: list[str | None], state: _RunState, cfg, clip) -> tuple[pl.DataFrame, dict]:
    captions: list[str | None] = []
    statuses: list[str] = []
    shas: list[str | None] = []
    per_sha: dict[str, tuple[str | None, str, bool]] = {}
    flagged = 0
    for sha, (raw, status) in state.sha_result.items():
        text, st = (clean_caption(raw) if status == "ok" else (None, status))
        low = False
        if st == "ok" and clip is not None and sha in state.clip_scores and state.clip_scores[sha] < cfg.clip_min_score:
            low = True
            if cfg.drop_flagged:
                text, st = None, "low_clip_score"
        per_sha[sha] = (text, st, low)
    for ref in refs:
        if ref is None:
            captions.append(None), statuses.append("missing"), shas.append(None)
            continue
        status, sha = state.ref_status.get(ref, ("error", None))
        if status != "ok" or sha is None:
            captions.append(None), statuses.append(status), shas.append(None)
            continue
        text, st, low = per_sha.get(sha, (None, "error", False))
        flagged += int(low)
        captions.append(text), statuses.append(st), shas.append(sha)
    frame = pl.DataFrame({"pin_id": pin_ids, "caption": captions, "caption_status": statuses, "image_sha256": shas},
                         schema=OUTPUT_SCHEMA)
    return frame, {"status": Counter(statuses), "flagged": flagged}


def _stats_skipped(n: int, seconds: float) -> dict:
    return {
        "model": None, "backend": None, "fingerprint": None, "settings": {}, "device": None, "dtype": None,
        "pins": n, "unique_images": 0, "cache_hits": 0, "captioned": 0, "failures": {},
        "status_counts": {"skipped": n} if n else {}, "images_per_s": None, "model_seconds": 0.0,
        "seconds": round(seconds, 3),
    }


__all__ = ["OUTPUT_SCHEMA", "caption_pins", "claim_batch", "hash_refs", "open_cache", "read_through_cache"]
