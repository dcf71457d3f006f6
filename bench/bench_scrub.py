"""Phrase normalisation and scrubbing in bounded, linear time on hostile input.

    python bench/bench_scrub.py              # 3,000,000 distinct queries, half crafted worst cases
    python bench/bench_scrub.py --n 20000    # a quick look

Three runs over the same number of characters, in chunks of `--chunk` distinct strings (the
way DuckDB hands them to the UDF; generation is not timed), taking turns chunk by chunk:

* mixed:  half realistic queries, half crafted worst cases (families below, each made distinct
          by a numeric suffix) at 500-2,000 characters;
* benign English / benign multilingual: the same realistic half, and in place of each crafted
          string a benign one of the same length (words of real queries in English, or in the
          fixtures' eight languages), so every run normalises the same amount of text.

It prints the times, the ratios (goal <= 2x: no input shape costs more than text of its size)
and the slowest family per string. As a contrast, it also times the pre-issue-9 e-mail pattern
(Python `re`, backtracking) on a few crafted strings, so the linear-time claim has its baseline
in the same run.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pinfeatures.build.scrub import normalize_phrases  # noqa: E402

# Two benign references: English (ASCII: the cheapest text there is) and what a multilingual query
# log holds (the fixtures' eight languages: non-ASCII text costs more in every engine).
ENGLISH = tuple("chocolate cake ideas easy recipe living room decor small garden wedding hair running shoes "
                "green smoothie beach vacation outfit diy birthday party kitchen".split())
MULTILINGUAL = tuple("chocolate cake ideas easy recipe living room decor small garden wedding hair running shoes "
                     "pastel de chocolate fácil ideas gâteau au chocolat recette Schokoladenkuchen einfacher "
                     "チョコレートケーキ 簡単 おしゃれ كعكة الشوكولاتة أفكار bolo de chocolate receita चॉकलेट केक आसान".split())

# name -> (builder of a crafted string of about n characters)
FAMILIES = {
    "nfkc_expanding_U+33AF": lambda n: "\u33af" * (n // 4),  # 6 chars each after NFKC
    "nfkc_18x_U+FDFA": lambda n: "\ufdfa" * (n // 8),  # 18 chars each after NFKC
    "at_run": lambda n: "a" + "@" * n,
    "at_letter_pairs": lambda n: "@a" * (n // 2),
    "dots_then_at": lambda n: "a." * (n // 2) + "@",
    "digit_run": lambda n: "1" * n,
    "digit_space_pairs": lambda n: "1 " * (n // 2),
    "plus_digit_pairs": lambda n: "+1" * (n // 2),
    "digit_dot_pairs": lambda n: "1." * (n // 2),
    "www_run": lambda n: "www." * (n // 4),
    "colon_pairs_ipv6": lambda n: "a:" * (n // 2),
    "tag_openers": lambda n: "<a" * (n // 2),
    "entities": lambda n: "&amp;" * (n // 5),
    "email_long_host": lambda n: "x@" + "a." * (n // 2),
    "nested_defang": lambda n: "[" * (n // 2) + "." + "]" * (n // 2),
    "digits_word_joined": lambda n: "\u2060".join("1" * (n // 2)),
    "spelled_at_dot": lambda n: "a at " + "b dot " * (n // 6),
}
FAMILY_NAMES = list(FAMILIES)
LENGTHS = (500, 1000, 2000)


def benign_query(i: int) -> str:
    words = MULTILINGUAL
    return f"{words[i % len(words)]} {words[(i // 7) % len(words)]} {words[(i // 49) % len(words)]} {i}"


def benign_of_length(i: int, n: int, words_from: tuple[str, ...] = ENGLISH) -> str:
    words = []
    total = 0
    j = i
    while total < n:
        w = words_from[j % len(words_from)]
        words.append(w)
        total += len(w) + 1
        j += 7
    return (" ".join(words) + f" {i}")[-n:] if n > 0 else ""


def crafted(i: int) -> tuple[str, str]:
    name = FAMILY_NAMES[i % len(FAMILY_NAMES)]
    n = LENGTHS[(i // len(FAMILY_NAMES)) % len(LENGTHS)]
    return name, f"{FAMILIES[name](n)} {i}"


def chunk(start: int, size: int, benign: tuple[str, ...] | None) -> list[str]:
    """Rows start..start+size of the run: even rows realistic, odd rows crafted (or, with `benign`
    words, benign text of the crafted string's length)."""
    out = []
    for i in range(start, start + size):
        if i % 2 == 0:
            out.append(benign_query(i))
        else:
            _, text = crafted(i)
            out.append(benign_of_length(i, len(text), benign) if benign else text)
    return out


def timed_runs(n: int, size: int) -> dict[str, tuple[float, int]]:
    """{run: (seconds, characters)} for the mixed run and the two benign ones. The three take turns
    chunk by chunk, so a change in the machine's load hits them alike and the ratios hold."""
    runs: dict[str, tuple[tuple[str, ...] | None, float, int]] = {"mixed": (None, 0.0, 0), "english": (ENGLISH, 0.0, 0),
                                                                 "multilingual": (MULTILINGUAL, 0.0, 0)}
    for start in range(0, n, size):
        for name, (benign, elapsed, chars) in runs.items():
            values = chunk(start, min(size, n - start), benign)
            t0 = time.perf_counter()
            normalize_phrases(values)
            runs[name] = (benign, elapsed + time.perf_counter() - t0, chars + sum(len(v) for v in values))
    return {name: (elapsed, chars) for name, (_, elapsed, chars) in runs.items()}


def per_family(repeat: int = 200) -> list[tuple[str, float, float]]:
    """Microseconds per string for each crafted family (2,000 chars) and for benign English text of its size."""
    rows = []
    for name, make in FAMILIES.items():
        crafted_values = [f"{make(2000)} {i}" for i in range(repeat)]
        benign_values = [benign_of_length(i, len(v)) for i, v in enumerate(crafted_values)]
        t0 = time.perf_counter()
        normalize_phrases(crafted_values)
        t1 = time.perf_counter()
        normalize_phrases(benign_values)
        t2 = time.perf_counter()
        rows.append((name, (t1 - t0) / repeat * 1e6, (t2 - t1) / repeat * 1e6))
    return rows


OLD_EMAIL_RE = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]{2,}")  # the pattern before issue 9


def old_pattern_seconds(samples: int) -> float:
    """The old e-mail pattern (Python re, after NFKC + casefold, as the old normalize_phrase ran it)."""
    t0 = time.perf_counter()
    for i in range(samples):
        OLD_EMAIL_RE.sub(" ", unicodedata.normalize("NFKC", "\u33af" * 2000 + str(i)).casefold())
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3_000_000, help="distinct strings per run (half crafted)")
    ap.add_argument("--chunk", type=int, default=100_000, help="strings per normalize_phrases call")
    ap.add_argument("--old-samples", type=int, default=5, help="crafted strings to time with the old pattern (0: skip)")
    args = ap.parse_args(argv)

    normalize_phrases(["warm up"])  # builds the translate table once, outside the timings
    runs = timed_runs(args.n, args.chunk)
    (mixed_s, mixed_chars), (english_s, english_chars), (multi_s, multi_chars) = runs["mixed"], runs["english"], runs["multilingual"]
    assert mixed_chars == english_chars == multi_chars, (mixed_chars, english_chars, multi_chars)
    print(f"strings per run: {args.n:,} ({args.n // 2:,} crafted worst cases of 500-2,000 chars, {len(FAMILIES)} families)")
    print(f"characters per run: {mixed_chars:,}")
    print(f"mixed (half crafted):            {mixed_s:8.2f} s  ({args.n / mixed_s:,.0f} strings/s)")
    print(f"benign English, same sizes:      {english_s:8.2f} s  ({args.n / english_s:,.0f} strings/s)")
    print(f"benign multilingual, same sizes: {multi_s:8.2f} s  ({args.n / multi_s:,.0f} strings/s)")
    print(f"ratio mixed / benign English:      {mixed_s / english_s:.2f}x  (goal <= 2x)")
    print(f"ratio mixed / benign multilingual: {mixed_s / multi_s:.2f}x  (goal <= 2x)")
    print("\nper family, 2,000-char strings (us per string: crafted | benign English of the same length | ratio):")
    for name, c_us, b_us in per_family():
        print(f"  {name:24s} {c_us:9.1f} | {b_us:9.1f} | {c_us / b_us:5.2f}x")
    if args.old_samples:
        old = old_pattern_seconds(args.old_samples)
        print(f"\nold e-mail pattern (Python re, backtracking) on {args.old_samples} x (2,000 x U+33AF): "
              f"{old:.2f} s, {old / args.old_samples * 1e3:.0f} ms per string")


if __name__ == "__main__":
    main()
