"""Language detection benchmarks: accuracy on labeled short texts (old vs new detector), and speed/agreement.

    .venv/bin/python bench/bench_language.py                       # accuracy on bench/language_labeled.csv
    .venv/bin/python bench/bench_language.py --agreement [--synthetic /tmp/lang_syn --n 3000]

Accuracy (default): bench/language_labeled.csv holds 320 short Pinterest-style texts written by
hand for this benchmark (not taken from the fixtures' templates): per language of the fixtures
(en es fr de ja ar pt hi), 24 pin titles, each with the one or two board titles such a pin is
saved to, and 16 search queries. Printed per language and kind (title / query):
  * old: the build's detector before issue 11: the pin's title + description only, texts under
    8 letters `und`, script shortcut, then langdetect's profiles in numpy with seeded langdetect
    for unsure texts (language_model.detect_hybrid);
  * new: pinfeatures.build.language as the build runs it: the titles are one build (its prior
    estimated from its own sure detections), read without and with their board titles; queries
    are detected from their text under that build's prior (the last resort of query_language,
    after locale and engaged pins), with the same confidence floor.
Accuracy counts `und` as wrong; `und` and precision (accuracy of the answers given) are shown too.
Then the same comparison on the 300 pins of fixtures/input, whose truth is the language
fixtures/make_fixtures.py wrote each pin in (regenerated from its seed), new = a real build's
`language` (there savers put pins into boards of several languages: 4:1.5:0.3 pin language :
English : each other language, so board titles are noisy evidence).

Agreement (--agreement): pinfeatures.build.language_model against seeded langdetect, speed and
agreement on the synthetic pins (a seeded sample of --n distinct texts; without --synthetic they
are generated into a temp folder), fixtures/input/pins.parquet, and the fixed multilingual list of
tests/build/test_language_model.py, with a min_margin sweep (docs/langid.md).
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
from pinfeatures.build.language import LanguageSettings, detect_languages, detect_texts, quick_languages  # noqa: E402

LABELED = ROOT / "bench" / "language_labeled.csv"
OLD_MIN_LETTERS = 8


def old_detector(texts: list[str], seed: int = 0) -> list[str]:
    """The build's language detector before issue 11 (title + description, no prior, no floor)."""
    quick = quick_languages(pl.Series(texts, dtype=pl.Utf8), OLD_MIN_LETTERS).to_list()
    ask = [t for t, q in zip(texts, quick) if q is None]
    answers = dict(zip(ask, langid.detect_hybrid(ask, seed=seed)))
    return [q if q is not None else answers[t] for t, q in zip(texts, quick)]


def new_detector(labeled: pl.DataFrame, with_boards: bool, settings: LanguageSettings) -> list[str]:
    """Titles as one build (with or without their boards), queries under that build's prior."""
    titles = labeled.with_row_index("i").filter(pl.col("kind") == "title")
    pins = titles.select(pl.col("i").cast(pl.Utf8).alias("pin_id"), pl.col("text").alias("title"), pl.lit(None, pl.Utf8).alias("description"))
    boards = None
    if with_boards:
        boards = titles.select(
            pl.col("i").cast(pl.Utf8).alias("pin_id"), pl.col("boards").fill_null("").str.split("|").list.eval(pl.element().filter(pl.element() != "")).alias("boards")
        )
    out, prior, _ = detect_languages(pins, boards, settings)
    by_row = dict(zip(titles.get_column("i").to_list(), out.get_column("language").to_list()))
    queries = labeled.with_row_index("i").filter(pl.col("kind") == "query")
    codes = detect_texts(queries.get_column("text").to_list(), prior, settings)
    by_row.update({i: codes[t] for i, t in zip(queries.get_column("i").to_list(), queries.get_column("text").to_list())})
    return [by_row[i] for i in range(labeled.height)]


def fixtures_accuracy(seed: int) -> None:
    sys.path.insert(0, str(ROOT / "fixtures"))
    import make_fixtures

    from pinfeatures.build.run import run_build
    from pinfeatures.config import make_config

    _, meta, _ = make_fixtures.make_pins(np.random.default_rng(make_fixtures.SEED))  # make_pins draws first in write_clean
    out = Path(tempfile.mkdtemp(prefix="lang_fix_")) / "build"
    run_build(make_config(None, input=str(ROOT / "fixtures" / "input"), out=str(out), quiet=True))
    features = pl.read_parquet(out / "features.parquet", columns=["pin_id", "title", "description", "language"])
    own = pl.concat_str([pl.col("title").fill_null(""), pl.col("description").fill_null("")], separator=" ").str.strip_chars().str.slice(0, 200)
    frame = features.with_columns(
        pl.Series("truth", [meta[p][1] for p in features.get_column("pin_id")]),
        pl.Series("old", old_detector(features.select(own).to_series().to_list(), seed)),
        (pl.col("title").fill_null("").str.len_chars() < 15).alias("short"),
    )
    for name, part in (("all pins", frame), ("titles < 15 chars", frame.filter(pl.col("short")))):
        print(f"   fixtures/input, {name:<18} n={part.height:>3}: old {(part['old'] == part['truth']).mean():.1%} "
              f"(und {(part['old'] == 'und').mean():.1%})   new {(part['language'] == part['truth']).mean():.1%} "
              f"(und {(part['language'] == 'und').mean():.1%})")


def accuracy(labeled: pl.DataFrame, seed: int, settings: LanguageSettings) -> None:
    answers = {
        "old": old_detector(labeled.get_column("text").to_list(), seed),
        "new": new_detector(labeled, False, settings),
        "new+boards": new_detector(labeled, True, settings),
    }
    frame = labeled.with_columns(*[pl.Series(name, codes) for name, codes in answers.items()])
    print(f"== accuracy on {LABELED.relative_to(ROOT)}: {labeled.height} texts; new: min_confidence "
          f"{settings.min_confidence}, temperature {settings.temperature}, prior_weight {settings.prior_weight}")
    print("   accuracy counts `und` as wrong; (und share / precision of the answers given)")
    header = f"{'language':<9}{'kind':<7}{'n':>4}" + "".join(f"{name:>26}" for name in answers)
    print(header)

    def line(lang: str, kind: str, part: pl.DataFrame) -> str:
        cells = []
        for name in answers:
            right = (part[name] == part["language"]).mean()
            und = (part[name] == "und").mean()
            given = part.filter(pl.col(name) != "und")
            precision = (given[name] == given["language"]).mean() if given.height else float("nan")
            cells.append(f"{right:>8.1%} ({und:>5.1%} / {precision:>6.1%})")
        return f"{lang:<9}{kind:<7}{part.height:>4}" + "".join(f"{c:>26}" for c in cells)

    for lang in sorted(frame.get_column("language").unique()):
        for kind in ("title", "query"):
            print(line(lang, kind, frame.filter((pl.col("language") == lang) & (pl.col("kind") == kind))))
    for kind in ("title", "query"):
        print(line("all", kind, frame.filter(pl.col("kind") == kind)))
    print(line("all", "all", frame))
    wrong = frame.filter((pl.col("new+boards") != pl.col("language")) & (pl.col("new+boards") != "und"))
    print(f"   new+boards wrong answers ({wrong.height}):", "; ".join(f"{r['text']!r} {r['language']}->{r['new+boards']}" for r in wrong.head(12).iter_rows(named=True)))


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
    from build.test_language_model import MULTILINGUAL  # the fixed list the tests use

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


def agreement(args: argparse.Namespace) -> None:
    syn = args.synthetic
    if syn is None:
        syn = Path(tempfile.mkdtemp(prefix="lang_syn_"))
        subprocess.run(
            [sys.executable, str(ROOT / "bench" / "make_synthetic.py"), "--out", str(syn), "--pins", "20000",
             "--saves", "1000", "--engagements", "1000"], check=True, stdout=subprocess.DEVNULL,
        )
    all_syn = stage_texts(syn / "pins.parquet")
    sample = random.Random(args.seed).sample(all_syn, min(args.n, len(all_syn)))

    report("multilingual list (tests/build/test_language_model.py)", multilingual(), args.seed, args.min_margin)
    report("fixtures/input/pins.parquet", stage_texts(ROOT / "fixtures" / "input" / "pins.parquet"), args.seed, args.min_margin)
    report(f"synthetic sample ({syn})", sample, args.seed, args.min_margin)

    langid._MODEL = None
    (_, margins), t = timed(langid.detect_fast, all_syn)
    print(f"\n== detect_fast on all {len(all_syn)} distinct synthetic texts (one process, cold cache, with model build): "
          f"{len(all_syn) / t:.0f} texts/s; would fall back at min_margin={args.min_margin}: "
          f"{np.mean(margins < args.min_margin):.1%}")
    pins = pl.read_parquet(syn / "pins.parquet", columns=["pin_id", "title", "description"])
    _, t_new = timed(detect_languages, pins, None, LanguageSettings())
    print(f"== the build's language stage (detect_languages, two passes) on {pins.height} synthetic pins: {t_new:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agreement", action="store_true", help="speed and agreement with seeded langdetect instead of accuracy")
    ap.add_argument("--synthetic", type=Path, help="folder from bench/make_synthetic.py (pins.parquet), for --agreement")
    ap.add_argument("--n", type=int, default=3000, help="synthetic texts compared with langdetect (it is slow)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-margin", type=float, default=langid.DEFAULT_MIN_MARGIN)
    ap.add_argument("--min-confidence", type=float, default=LanguageSettings().min_confidence)
    args = ap.parse_args()
    if args.agreement:
        agreement(args)
    else:
        accuracy(pl.read_csv(LABELED), args.seed, LanguageSettings(min_confidence=args.min_confidence))
        fixtures_accuracy(args.seed)


if __name__ == "__main__":
    main()
