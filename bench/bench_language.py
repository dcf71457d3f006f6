"""Benchmark pinfeatures.build.language_model against seeded langdetect: speed and agreement.

    .venv/bin/python bench/make_synthetic.py --out /tmp/lang_syn --pins 20000 --saves 1000 --engagements 1000
    .venv/bin/python bench/bench_language.py --synthetic /tmp/lang_syn --n 3000

Texts are what the language stage sees: title + ' ' + description, stripped, first 200 chars,
distinct. Sets: the synthetic pins (a seeded sample of --n distinct texts; without --synthetic
they are generated into a temp folder), fixtures/input/pins.parquet, and the fixed multilingual
list from tests/test_langid.py. Prints, per set: texts/s of langdetect, detect_fast and
detect_hybrid (one process), agreement with langdetect, the share that falls back, and a sweep of
min_margin (agreement vs fallback share), then detect_fast alone on all distinct synthetic texts.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pinfeatures.build import language_model as langid  # noqa: E402


def stage_texts(pins_parquet: Path) -> list[str]:
    """Distinct title + ' ' + description, stripped, first 200 chars (as pinfeatures.build.language does)."""
    df = pl.read_parquet(pins_parquet, columns=["title", "description"])
    col = (
        pl.concat_str([pl.col("title").fill_null(""), pl.col("description").fill_null("")], separator=" ")
        .str.strip_chars()
        .str.slice(0, 200)
    )
    return list(dict.fromkeys(df.select(col.alias("t")).get_column("t").to_list()))


def multilingual() -> list[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from test_langid import MULTILINGUAL  # the fixed list the tests use

    return [t for _, t in MULTILINGUAL]


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def report(name: str, texts: list[str], seed: int, min_margin: float) -> None:
    ref, t_ld = timed(langid.detect_langdetect, texts, seed=seed)
    langid._MODEL = None  # include the model build once, as a fresh process would pay it
    (_, _), t_build = timed(langid.detect_fast, texts[:1])
    langid._MODEL = None
    (fast, margins), t_fast_cold = timed(langid.detect_fast, texts)
    (fast, margins), t_fast = timed(langid.detect_fast, texts)  # warm word cache
    hyb, t_hyb = timed(langid.detect_hybrid, texts, seed=seed, min_margin=min_margin)
    ref_a, fast_a, hyb_a = np.array(ref), np.array(fast), np.array(hyb)
    n = len(texts)
    fallback = float(np.mean((margins < min_margin) & (fast_a != langid.UND)))
    print(f"\n== {name}: {n} distinct texts, mean {np.mean([len(t) for t in texts]):.0f} chars")
    print(f"  langdetect (seed {seed})   {n / t_ld:10.0f} texts/s")
    print(f"  detect_fast cold           {n / t_fast_cold:10.0f} texts/s  (model build alone {t_build:.2f} s)")
    print(f"  detect_fast warm cache     {n / t_fast:10.0f} texts/s")
    print(f"  detect_hybrid m={min_margin:<5}       {n / t_hyb:10.0f} texts/s  fallback {fallback:.1%}")
    print(f"  agreement with langdetect: fast {np.mean(fast_a == ref_a):.2%}  hybrid {np.mean(hyb_a == ref_a):.2%}")
    print("  min_margin sweep (hybrid agreement / fallback share):")
    row = []
    for mm in (0, 1, 2, 3, 4, 6, 8, 10, 12, 16, 20):
        fb = (margins < mm) & (fast_a != langid.UND)
        agree = np.mean(np.where(fb, True, fast_a == ref_a))  # a fallback answer is langdetect's own
        row.append(f"{mm}:{agree:.2%}/{fb.mean():.1%}")
    print("   ", "  ".join(row))
    wrong = [(t, f, r, round(float(mg), 2)) for t, f, r, mg in zip(texts, fast, ref, margins) if f != r]
    langs = sorted(set(ref))
    per = {lg: f"{np.mean(fast_a[ref_a == lg] == lg):.0%}" for lg in langs if (ref_a == lg).sum() >= 5}
    print("  fast agreement by langdetect's answer:", per)
    for t, f, r, mg in wrong[:6]:
        print(f"    fast={f} langdetect={r} margin={mg}: {t[:80]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=Path, help="folder from bench/make_synthetic.py (pins.parquet)")
    ap.add_argument("--n", type=int, default=3000, help="synthetic texts compared with langdetect (it is slow)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-margin", type=float, default=langid.DEFAULT_MIN_MARGIN)
    args = ap.parse_args()

    syn = args.synthetic
    if syn is None:
        syn = Path(tempfile.mkdtemp(prefix="lang_syn_"))
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(syn), "--pins", "20000",
             "--saves", "1000", "--engagements", "1000"], check=True, stdout=subprocess.DEVNULL,
        )
    all_syn = stage_texts(syn / "pins.parquet")
    sample = random.Random(args.seed).sample(all_syn, min(args.n, len(all_syn)))

    report("multilingual list (tests/test_langid.py)", multilingual(), args.seed, args.min_margin)
    report("fixtures/input/pins.parquet", stage_texts(ROOT / "fixtures" / "input" / "pins.parquet"), args.seed, args.min_margin)
    report(f"synthetic sample ({syn})", sample, args.seed, args.min_margin)

    langid._MODEL = None
    (_, margins), t = timed(langid.detect_fast, all_syn)
    print(f"\n== detect_fast on all {len(all_syn)} distinct synthetic texts (one process, cold cache, with model build): "
          f"{len(all_syn) / t:.0f} texts/s; would fall back at min_margin={args.min_margin}: "
          f"{np.mean(margins < args.min_margin):.1%}")


if __name__ == "__main__":
    main()
