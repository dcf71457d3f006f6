"""Benchmark the caption stage against a naive per-image loop, and measure the cache.

    .venv/bin/python bench/bench_caption.py [--images 200] [--gpu-images 1024] [--out bench/results/caption.json]

What it measures, in one run:

1. CPU, tiny model (the bundled demo BLIP): images/s of `caption_pins` (batched, loader
   overlapping the model, fresh cache) against a naive loop that opens each image and calls a
   transformers `pipeline("image-text-to-text")` on it, one image at a time (transformers 5
   folded the old "image-to-text" task into it), and against a stronger baseline: the same
   loaded model called with one image per `generate`. Both sides load the
   model beforehand and generate exactly the same number of tokens (min_new_tokens ==
   max_new_tokens). Every image is distinct, so dedupe plays no part in the ratio.
2. The cache: a rebuild with 1% of the pins changed (new images) - time and images captioned,
   against the first (cold) run.
3. GPU (only when torch.cuda.is_available()): the same comparison with a full-size architecture
   (BLIP-base config, random weights, bf16), fixed generation length.

Prints the ratios and writes the figures to bench/results/caption.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "fixtures"))

import numpy as np
import polars as pl
from PIL import Image

from pinfeatures.caption.backends import load_captioner, resolve_model
from pinfeatures.caption.loop import caption_pins
from pinfeatures.caption.settings import CaptionSettings


def make_images(folder: Path, n: int, size: int, seed: int, prefix: str = "img") -> list[str]:
    """n distinct JPEGs (smooth random colour fields), deterministic from the seed."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        small = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        name = f"{prefix}{i:05d}.jpg"
        im.save(folder / name, "JPEG", quality=90)
        names.append(name)
    return names


def naive_loop(model_path: str, images_root: Path, refs: list[str], gen: dict, device: str, dtype) -> tuple[float, int]:
    """Per-image transformers pipeline: open, caption, next. Returns (seconds, images)."""
    import torch
    from transformers import pipeline

    pipe = pipeline("image-text-to-text", model=model_path, device=device, dtype=dtype)
    # warm-up (first-call allocations), not timed
    pipe(images=Image.open(images_root / refs[0]).convert("RGB"), text="", generate_kwargs=gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for ref in refs:
        with Image.open(images_root / ref) as im:
            pipe(images=im.convert("RGB"), text="", generate_kwargs=gen)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t, len(refs)


def per_image_generate(captioner, images_root: Path, refs: list[str]) -> tuple[float, int]:
    """A second, stronger baseline: the same loaded model, called on one image at a time
    (no pipeline overhead, no batching, no loader overlap)."""
    import torch

    captioner.caption([Image.open(images_root / refs[0]).convert("RGB")])  # warm-up
    if captioner.device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    for ref in refs:
        with Image.open(images_root / ref) as im:
            captioner.caption([im.convert("RGB")])
    if captioner.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t, len(refs)


def stage_run(cfg: CaptionSettings, refs: list[str], images_root: Path, cache_dir: Path, captioner) -> tuple[float, dict]:
    pins = pl.DataFrame({"pin_id": [f"p{i}" for i in range(len(refs))], "image": refs})
    t = time.perf_counter()
    out, stats = caption_pins(pins, cfg, images_root=images_root, cache_dir=cache_dir, quiet=True, captioner=captioner)
    seconds = time.perf_counter() - t
    assert out.height == len(refs)
    return seconds, stats


def compare(label: str, model_path: str, cfg: CaptionSettings, n_images: int, image_px: int, work: Path, naive_n: int) -> dict:
    import torch

    imgs = work / f"{label}_images"
    refs = make_images(imgs, n_images, image_px, seed=1)
    captioner = load_captioner(resolve_model(cfg), cfg)
    gen = {"max_new_tokens": cfg.max_new_tokens, "min_new_tokens": cfg.min_new_tokens, "num_beams": 1, "do_sample": False}
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[captioner.dtype]

    # warm the stage too (first batch allocations), on images outside the timed set
    warm = make_images(work / f"{label}_warm", cfg.batch_size, image_px, seed=99, prefix="warm")
    stage_run(cfg, warm, work / f"{label}_warm", work / f"{label}_warmcache", captioner)

    naive_s, naive_count = naive_loop(model_path, imgs, refs[:naive_n], gen, captioner.device, dtype)
    naive_ips = naive_count / naive_s
    single_s, single_count = per_image_generate(captioner, imgs, refs[:naive_n])
    single_ips = single_count / single_s

    cache_dir = work / f"{label}_cache"
    cold_s, cold = stage_run(cfg, refs, imgs, cache_dir, captioner)
    stage_ips = cold["captioned"] / cold_s

    # rebuild after 1% of pins changed: replace 1% of the images with new ones
    n_changed = max(1, n_images // 100)
    new = make_images(imgs, n_changed, image_px, seed=7, prefix="changed")
    refs2 = new + refs[n_changed:]
    warm_s, warm_stats = stage_run(cfg, refs2, imgs, cache_dir, captioner)
    result = {
        "device": captioner.device,
        "dtype": captioner.dtype,
        "model": cfg.model,
        "images": n_images,
        "image_px": image_px,
        "batch_size": cfg.batch_size,
        "new_tokens_per_image": cfg.max_new_tokens,
        "naive": {"images": naive_count, "seconds": round(naive_s, 3), "images_per_s": round(naive_ips, 2)},
        "stage": {"images": cold["captioned"], "seconds": round(cold_s, 3), "images_per_s": round(stage_ips, 2),
                  "final_batch_size": cold["settings"]["final_batch_size"]},
        "per_image_generate": {"images": single_count, "seconds": round(single_s, 3),
                               "images_per_s": round(single_ips, 2)},
        "speedup_vs_naive": round(stage_ips / naive_ips, 2),
        "speedup_vs_per_image_generate": round(stage_ips / single_ips, 2),
        "rebuild_1pct_changed": {
            "pins_changed": n_changed,
            "captioned": warm_stats["captioned"],
            "cache_hits": warm_stats["cache_hits"],
            "seconds": round(warm_s, 3),
            "cold_seconds": round(cold_s, 3),
            "speedup_vs_cold": round(cold_s / warm_s, 2),
        },
    }
    print(
        f"[{label}] {captioner.device}/{captioner.dtype} {n_images} images x {cfg.max_new_tokens} tokens: "
        f"stage {stage_ips:.1f} img/s vs naive pipeline loop {naive_ips:.1f} img/s -> {stage_ips / naive_ips:.1f}x "
        f"(vs per-image generate {single_ips:.1f} img/s -> {stage_ips / single_ips:.1f}x); "
        f"rebuild after {n_changed} changed pins: {warm_stats['captioned']} captioned in {warm_s:.2f} s "
        f"(cold {cold_s:.2f} s, {cold_s / warm_s:.1f}x faster)",
        flush=True,
    )
    del captioner
    return result


def build_blip_base(out: Path) -> Path:
    """BLIP-base sized captioner from config with random weights (throughput only; captions are noise)."""
    import torch
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    out.mkdir(parents=True, exist_ok=True)
    cfg = BlipConfig()  # defaults are the base model's sizes: ViT-B/16 at 384 px, 12-layer BERT decoder
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(cfg.text_config.vocab_size - 5)]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)})
    cfg.text_config.bos_token_id = tok.cls_token_id
    cfg.text_config.sep_token_id = cfg.text_config.eos_token_id = tok.sep_token_id
    cfg.text_config.pad_token_id = tok.pad_token_id
    torch.manual_seed(0)
    BlipForConditionalGeneration(cfg).save_pretrained(out, safe_serialization=True)
    size = cfg.vision_config.image_size
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": size, "width": size}), tokenizer=tok).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=200, help="CPU images (tiny model)")
    ap.add_argument("--tokens", type=int, default=12, help="CPU: fixed new tokens per caption")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--gpu-images", type=int, default=1024)
    ap.add_argument("--gpu-naive-images", type=int, default=128, help="the naive loop is slow; time a subset")
    ap.add_argument("--gpu-batch-size", type=int, default=64)
    ap.add_argument("--gpu-tokens", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "caption.json"))
    args = ap.parse_args()

    import torch
    import transformers

    results: dict = {
        "command": "python bench/bench_caption.py " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    # other work on the machine skews CPU figures: record how busy it was
                    "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]},
    }
    work = Path(tempfile.mkdtemp(prefix="pinfeatures-bench-caption-"))
    try:
        demo = str(ROOT / "fixtures" / "models" / "demo-captioner")
        cpu_cfg = CaptionSettings(caption_model="demo", device="cpu", max_new_tokens=args.tokens, min_new_tokens=args.tokens,
                                batch_size=args.batch_size)
        results["cpu_tiny"] = compare("cpu_tiny", demo, cpu_cfg, args.images, 256, work, naive_n=args.images)
        if torch.cuda.is_available():
            blip = build_blip_base(work / "blip-base-random")
            gpu_cfg = CaptionSettings(caption_model=str(blip), device="cuda", dtype="auto", max_new_tokens=args.gpu_tokens,
                                    min_new_tokens=args.gpu_tokens, batch_size=args.gpu_batch_size, loader_workers=8)
            results["gpu_blip_base"] = compare("gpu_blip_base", str(blip), gpu_cfg, args.gpu_images, 512, work,
                                               naive_n=args.gpu_naive_images)
        else:
            results["gpu_blip_base"] = None
            print("[gpu] no CUDA device: GPU comparison not run", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
