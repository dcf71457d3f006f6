"""Write a large synthetic input set (pins, boards, saves, engagements) for the build benchmark.

    python bench/make_synthetic.py --out bench/data/1m --pins 1000000 --saves 5000000 --engagements 20000000

Writes OUT/pins.parquet, OUT/boards.parquet, OUT/saves.parquet and OUT/engagements/part-*.parquet
(the same schema as fixtures/input), plus OUT/synthetic.json with the settings and row counts.

What the data looks like (bench/README.md says the same):

* pins in 10 languages (en es fr de ja ar pt hi it ko), 12 topics; titles and descriptions come
  from per-language templates and vocabulary (a topic phrase, a template, a suffix, two extra
  sentences with a number), so originals are mostly distinct texts; ~10% vague titles
  ('Love this ❤️'), ~15% empty descriptions.
* about 40% of pins (--repin-share) are repins: they share the title, description and image of
  an earlier pin, as repins on Pinterest do (so de-duplicated stages see ~60% distinct texts).
* boards (default pins/4) titled in the pins' languages, with case/space variants and a little
  personal data; saves pick pins by a Zipf-like popularity and a board of the pin's topic
  (mostly in the pin's language).
* engagements are generated per (query, pin) pair: Zipf query popularity over ~3.7k head queries,
  pins of the query's topic with Zipf popularity, a heavy-tailed number of events per pair,
  Zipf users; ~10% of pairs are impressions only; the others are ~75% impressions.
* a long tail, as a real search log has (--tail-share of the events, default 25%): each tail
  (query, pin) pair gets a query of its own, a head query (drawn by the same Zipf) refined by two
  made-up words and, for a third of them, a typo (one character dropped), with 1 event (75%), 2
  (20%) or 3 (5%). At 20M events that is ~3.8M distinct raw queries, ~75% of them seen once:
  query normalisation, which runs once per distinct string, pays what it pays on a real log.

Vectorised (numpy + Polars) and memory-bounded: engagements are written in parts of
--chunk rows, each from its own seeded generator, so the output is deterministic.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent


def _load_fixture_vocab():
    """Reuse the fixtures' topic/template vocabulary (8 languages) so demo and benchmark agree."""
    spec = importlib.util.spec_from_file_location("_pf_fixtures", ROOT / "fixtures" / "make_fixtures.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


FX = _load_fixture_vocab()

# two more languages on top of the fixtures' eight
EXTRA_TOPIC_PHRASES = {
    "it": ("torta al cioccolato", "ricetta della pasta", "frullato verde", "arredamento soggiorno", "design cucina",
           "piccolo giardino", "scarpe da corsa", "vestito estivo", "acconciatura da sposa", "vacanze al mare",
           "escursioni in montagna", "pittura ad acquerello"),
    "ko": ("초콜릿 케이크", "파스타 레시피", "그린 스무디", "거실 인테리어", "주방 디자인", "작은 정원", "러닝화",
           "여름 원피스", "웨딩 헤어스타일", "해변 휴가", "등산", "수채화"),
}
EXTRA_TEMPLATES = {
    "it": {"title": ("{T} facile", "Idee per {t}", "La migliore {t}", "Ispirazione: {t}"),
           "desc": ("Guida passo passo: {t}. L'ho salvata per il fine settimana ed è venuta benissimo.",
                    "Una raccolta di {t} da provare quest'anno. Semplice e bella.",
                    "Tutto quello che c'è da sapere su {t}, con i consigli dei lettori."),
           "board": ("{T}", "Idee {t}"), "query": ("{t}", "{t} facile", "idee {t}"),
           "vague": ("Che bello!", "😍"), "extra": ("Pronto in {n} minuti.", "Salvato da {n} persone questa settimana.",
                                                     "Il numero {n} è il mio preferito.", "Costo circa {n} euro.")},
    "ko": {"title": ("쉬운 {t}", "{t} 아이디어", "최고의 {t}", "{t} 모음"),
           "desc": ("{t} 만드는 방법을 단계별로 소개합니다. 주말에 해봤는데 정말 잘 됐어요.",
                    "올해 꼭 해보고 싶은 {t} 모음입니다. 간단하고 예뻐요.",
                    "{t}에 대해 알아야 할 모든 것, 독자들의 팁과 함께."),
           "board": ("{t}", "{t} 아이디어"), "query": ("{t}", "{t} 추천", "쉬운 {t}"),
           "vague": ("최고예요!", "🥰"), "extra": ("{n}분이면 완성돼요.", "이번 주에 {n}명이 저장했어요.",
                                                    "{n}번이 제일 마음에 들어요.", "비용은 약 {n}천원이에요.")},
}
EXTRA_SENTENCES = {
    "en": ("Ready in {n} minutes.", "Saved by {n} people this week.", "Number {n} is my favourite.", "Costs about {n} dollars."),
    "es": ("Listo en {n} minutos.", "Guardado por {n} personas esta semana.", "El número {n} es mi favorito.", "Cuesta unos {n} euros."),
    "fr": ("Prêt en {n} minutes.", "Enregistré par {n} personnes cette semaine.", "Le numéro {n} est mon préféré.", "Coûte environ {n} euros."),
    "de": ("In {n} Minuten fertig.", "Diese Woche von {n} Leuten gemerkt.", "Nummer {n} ist mein Favorit.", "Kostet etwa {n} Euro."),
    "ja": ("{n}分で完成します。", "今週{n}人が保存しました。", "{n}番がいちばん好きです。", "費用は約{n}百円です。"),
    "ar": ("جاهز في {n} دقيقة.", "حفظه {n} شخصا هذا الأسبوع.", "الرقم {n} هو المفضل لدي.", "التكلفة حوالي {n} دولارا."),
    "pt": ("Pronto em {n} minutos.", "Salvo por {n} pessoas esta semana.", "O número {n} é o meu favorito.", "Custa cerca de {n} reais."),
    "hi": ("{n} मिनट में तैयार।", "इस हफ्ते {n} लोगों ने सहेजा।", "नंबर {n} मेरा पसंदीदा है।", "लगभग {n} रुपये का खर्च।"),
}
LANGS = FX.LANGS + ("it", "ko")
LANG_P = np.array(FX.LANG_WEIGHTS + (0.06, 0.05))
LANG_P = LANG_P / LANG_P.sum()
LOCALE = {**FX.LOCALE, "it": ("IT", "it-IT"), "ko": ("KR", "ko-KR")}
N_TOPICS = len(FX.TOPIC_KEYS)
TITLE_SUFFIXES = ("", "", "", "", " ✨", " 😍", " 2024", " #diy", " #inspo", " | blog", " ❤️", " (part 2)")
QUERY_MODIFIERS = ("", "", "", " 2024", " aesthetic", " diy", " for kids", " cheap", " easy", " ideas", " tutorial",
                   " black", " white", " pink", " green", " minimalist", " vintage", " boho", " small", " luxury",
                   " near me", " pinterest", " simple", " modern", " cute", " quick", " healthy", " outfit", " photos")
# modifiers that other languages borrow from English as they are
LOANWORD_MODIFIERS = ("", " 2024", " diy", " aesthetic", " boho", " vintage", " minimalist", " tutorial")
ACTIONS = ("impression", "click", "closeup", "save", "long_click")
ACTION_P = np.array([0.80, 0.08, 0.06, 0.03, 0.03])
ENGAGED_P = ACTION_P[1:] / ACTION_P[1:].sum()
T0 = 1_700_000_000_000_000  # microseconds since epoch (Nov 2023)
YEAR_US = 365 * 86400 * 1_000_000


def phrase(lang: str, topic: int) -> str:
    if lang in EXTRA_TOPIC_PHRASES:
        return EXTRA_TOPIC_PHRASES[lang][topic]
    return FX.TOPICS[FX.TOPIC_KEYS[topic]][1][lang]


def templates(lang: str, kind: str) -> tuple[str, ...]:
    if lang in EXTRA_TEMPLATES:
        return EXTRA_TEMPLATES[lang][kind]
    table = {"title": FX.TITLE_TEMPLATES, "desc": FX.DESC_TEMPLATES, "board": FX.BOARD_TEMPLATES,
             "query": FX.QUERY_TEMPLATES, "vague": FX.VAGUE_TITLES, "extra": EXTRA_SENTENCES}[kind]
    return table[lang]


def vocab_table(kind: str) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """All filled templates of `kind` as one Series, with per-(lang, topic) start offsets and counts.

    Entry (l, t) covers rows start[l, t] : start[l, t] + count[l, t]; picking a row is then
    `start + floor(u * count)`, vectorised.
    """
    strings: list[str] = []
    start = np.zeros((len(LANGS), N_TOPICS), dtype=np.int64)
    count = np.zeros((len(LANGS), N_TOPICS), dtype=np.int64)
    for li, lang in enumerate(LANGS):
        for t in range(N_TOPICS):
            p = phrase(lang, t)
            if kind == "query":
                p = p.lower() if lang not in ("ja", "ar", "hi", "ko") else p
            # str.replace, not format: the 'extra' sentences keep their {n} slot for later
            filled = [tpl.replace("{t}", p).replace("{T}", FX.cap(p)) for tpl in templates(lang, kind)]
            start[li, t], count[li, t] = len(strings), len(filled)
            strings.extend(filled)
    return pl.Series(strings, dtype=pl.String), start, count


def pick(rng: np.random.Generator, start: np.ndarray, count: np.ndarray, lang: np.ndarray, topic: np.ndarray) -> np.ndarray:
    return start[lang, topic] + (rng.random(len(lang)) * count[lang, topic]).astype(np.int64)


def zipf_sampler(n: int, s: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return (cdf, perm): item perm[searchsorted(cdf, u)] is drawn with weight 1/rank^s (ranks shuffled)."""
    w = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** s
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    return cdf, rng.permutation(n)


def draw(cdf: np.ndarray, perm: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    return perm[np.minimum(np.searchsorted(cdf, rng.random(size)), len(cdf) - 1)]


def ids(prefix: str, idx: np.ndarray | pl.Series, width: int = 8) -> pl.Series:
    """'P00000042'-style string ids from integers."""
    s = idx if isinstance(idx, pl.Series) else pl.Series(idx)
    return pl.select(pl.concat_str([pl.lit(prefix), pl.lit(s).cast(pl.String).str.zfill(width)])).to_series()


def write(df: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.write_parquet(path, compression="zstd", compression_level=3, statistics=True, row_group_size=512 * 1024)


def make_pins(n: int, repin_share: float, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """Pins with per-language texts; ~repin_share of them copy an earlier original's title/description/image."""
    rng = np.random.default_rng([seed, 1])
    is_repin = rng.random(n) < repin_share
    is_repin[0] = False
    orig_idx = np.flatnonzero(~is_repin)
    n_orig = len(orig_idx)
    # originals' own attributes
    lang = rng.choice(len(LANGS), size=n_orig, p=LANG_P)
    topic = rng.integers(0, N_TOPICS, size=n_orig)
    titles, ts, tc = vocab_table("title")
    vague, vs, vc = vocab_table("vague")
    descs, ds, dc = vocab_table("desc")
    extra, es_, ec = vocab_table("extra")
    t_idx = pick(rng, ts, tc, lang, topic)
    is_vague = rng.random(n_orig) < 0.10
    v_idx = pick(rng, vs, vc, lang, topic)
    suffix = pl.Series(TITLE_SUFFIXES).gather(rng.integers(0, len(TITLE_SUFFIXES), n_orig))
    title = pl.select(pl.when(pl.lit(pl.Series(is_vague))).then(pl.lit(vague.gather(v_idx)))
                      .otherwise(pl.concat_str([pl.lit(titles.gather(t_idx)), pl.lit(suffix)]))).to_series()
    d1 = descs.gather(pick(rng, ds, dc, lang, topic))
    x1 = extra.gather(pick(rng, es_, ec, lang, topic)).str.replace("{n}", pl.Series(rng.integers(2, 500, n_orig)).cast(pl.String), literal=True)
    x2 = extra.gather(pick(rng, es_, ec, lang, topic)).str.replace("{n}", pl.Series(rng.integers(2, 500, n_orig)).cast(pl.String), literal=True)
    desc = pl.select(pl.concat_str([pl.lit(d1), pl.lit(x1), pl.lit(x2)], separator=" ")).to_series()
    u = rng.random(n_orig)
    desc = pl.select(pl.when(pl.lit(pl.Series(u < 0.12))).then(pl.lit(""))
                     .when(pl.lit(pl.Series(u < 0.15))).then(pl.lit(None, dtype=pl.String))
                     .otherwise(pl.lit(desc))).to_series()
    # each pin row -> the original it copies (itself for originals): a uniformly chosen earlier original
    n_before = np.cumsum(~is_repin) - (~is_repin)  # originals strictly before each row
    src_orig = np.where(is_repin, (rng.random(n) * np.maximum(n_before, 1)).astype(np.int64), np.cumsum(~is_repin) - 1)
    created = T0 - YEAR_US + np.sort(rng.integers(0, YEAR_US, n))
    image_id = pl.Series(orig_idx[src_orig])
    image = pl.select(pl.concat_str([pl.lit("img/"), pl.lit(image_id % 256).cast(pl.String).str.zfill(3), pl.lit("/"),
                                     pl.lit(image_id).cast(pl.String), pl.lit(".jpg")])).to_series()
    link = pl.select(pl.when(pl.lit(pl.Series(rng.random(n) < 0.6)))
                     .then(pl.concat_str([pl.lit("https://example.com/p/"), pl.lit(image_id).cast(pl.String)]))
                     .otherwise(pl.lit(None, dtype=pl.String))).to_series()
    df = pl.DataFrame({
        "pin_id": ids("P", np.arange(n)),
        "title": title.gather(src_orig),
        "description": desc.gather(src_orig),
        "image": image,
        "link": link,
        "created_at": pl.Series(created).cast(pl.Datetime("us", "UTC")),
    })
    return df, lang[src_orig], topic[src_orig]


def make_boards(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 2])
    lang = rng.choice(len(LANGS), size=n, p=LANG_P)
    topic = rng.integers(0, N_TOPICS, size=n)
    btitles, bs, bc = vocab_table("board")
    title = btitles.gather(pick(rng, bs, bc, lang, topic))
    u = rng.random(n)
    # variants that normalisation merges, and a little personal data to scrub
    title = pl.select(
        pl.when(pl.lit(pl.Series(u < 0.05))).then(pl.lit(title).str.to_uppercase())
        .when(pl.lit(pl.Series(u < 0.08))).then(pl.concat_str([pl.lit("  "), pl.lit(title), pl.lit(" ")]))
        .when(pl.lit(pl.Series(u < 0.09))).then(pl.lit(title).str.to_lowercase())
        .when(pl.lit(pl.Series(u < 0.0905))).then(pl.concat_str([pl.lit(title), pl.lit(" - shop@example.com")]))
        .when(pl.lit(pl.Series(u < 0.091))).then(pl.concat_str([pl.lit(title), pl.lit(" +1 415 555 0100")]))
        .otherwise(pl.lit(title))).to_series()
    df = pl.DataFrame({"board_id": ids("B", np.arange(n)), "title": title,
                       "description": pl.Series([None] * n, dtype=pl.String)})
    return df, lang, topic


def group_index(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items sorted by key, with each key's start and count in that order (for 'pick one of key k')."""
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(keys, minlength=n_keys)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts, counts


def pick_in_group(rng, order, starts, counts, keys, fallback_keys=None, fallback_index=None):
    """For each key, a uniformly chosen item of that key (or of its fallback group when the key is empty)."""
    c = counts[keys]
    out = order[starts[keys] + (rng.random(len(keys)) * np.maximum(c, 1)).astype(np.int64)]
    if fallback_keys is not None and (c == 0).any():
        fo, fs, fc = fallback_index
        m = c == 0
        out[m] = fo[fs[fallback_keys[m]] + (rng.random(int(m.sum())) * fc[fallback_keys[m]]).astype(np.int64)]
    return out


def make_saves(n: int, pin_lang, pin_topic, board_lang, board_topic, n_users: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng([seed, 3])
    n_pins = len(pin_lang)
    pcdf, pperm = zipf_sampler(n_pins, 0.8, rng)
    pin = draw(pcdf, pperm, rng, n)
    by_lt = group_index(board_lang * N_TOPICS + board_topic, len(LANGS) * N_TOPICS)
    by_t = group_index(board_topic, N_TOPICS)
    same_lang = rng.random(n) < 0.7  # mostly a board in the pin's language, else any board of the topic
    board = np.empty(n, dtype=np.int64)
    m = same_lang
    board[m] = pick_in_group(rng, *by_lt, (pin_lang * N_TOPICS + pin_topic)[pin[m]], pin_topic[pin[m]], by_t)
    board[~m] = pick_in_group(rng, *by_t, pin_topic[pin[~m]])
    ucdf, uperm = zipf_sampler(n_users, 0.9, rng)
    user = draw(ucdf, uperm, rng, n)
    return pl.DataFrame({
        "pin_id": ids("P", pin), "board_id": ids("B", board), "user_id": ids("U", user),
        "saved_at": pl.Series(T0 + rng.integers(0, YEAR_US // 2, n)).cast(pl.Datetime("us", "UTC")),
    })


def query_vocab() -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """~3.7k queries: base query (lang x topic x template) + a modifier; with their lang and topic."""
    base, bs, bc = vocab_table("query")
    q, ql, qt = [], [], []
    base_list = base.to_list()
    for li in range(len(LANGS)):
        for t in range(N_TOPICS):
            for b in base_list[bs[li, t]: bs[li, t] + bc[li, t]]:
                mods = QUERY_MODIFIERS if LANGS[li] == "en" else LOANWORD_MODIFIERS
                for mod in dict.fromkeys(mods):
                    q.append(b + mod)
                    ql.append(li)
                    qt.append(t)
    return pl.Series(q, dtype=pl.String), np.array(ql), np.array(qt)


TAIL_EVENTS_P = np.array([0.75, 0.20, 0.05])  # events per long-tail pair: 1, 2 or 3
TAIL_SYLLABLES = tuple(c + v for c in "bdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou"))


def tail_words(rng: np.random.Generator, n: int = 50_000) -> pl.Series:
    """`n` made-up refinement words of 2-3 syllables ('kelou', 'mabite', ...), deterministic for `rng`."""
    syl = np.array(TAIL_SYLLABLES)
    k = len(syl)
    words = pl.Series(syl[rng.integers(0, k, n)]) + pl.Series(syl[rng.integers(0, k, n)])
    three = pl.Series(rng.random(n) < 0.5)
    return pl.select(pl.when(pl.lit(three)).then(pl.lit(words) + pl.lit(pl.Series(syl[rng.integers(0, k, n)])))
                     .otherwise(pl.lit(words))).to_series()


def tail_queries(rng: np.random.Generator, base: pl.Series, words: pl.Series) -> pl.Series:
    """One long-tail query per base query: base + two refinement words; a third get a typo (a character dropped)."""
    n = len(base)
    w1 = words.gather(rng.integers(0, len(words), n))
    w2 = words.gather(rng.integers(0, len(words), n))
    q = pl.select(pl.concat_str([pl.lit(base), pl.lit(w1), pl.lit(w2)], separator=" ")).to_series()
    typo = pl.Series(rng.random(n) < 1 / 3)
    at = pl.Series((rng.random(n) * base.str.len_chars().to_numpy()).astype(np.int64))
    frame = pl.DataFrame({"q": q, "typo": typo, "at": at})
    return frame.select(
        pl.when(pl.col("typo")).then(pl.concat_str([pl.col("q").str.slice(0, pl.col("at")), pl.col("q").str.slice(pl.col("at") + 1)]))
        .otherwise(pl.col("q"))
    ).to_series()


def write_engagements(out: Path, n_events: int, pin_lang, pin_topic, n_users: int, seed: int, chunk: int,
                      tail_share: float = 0.0) -> int:
    """Events grouped in (query, pin) pairs, written in parts of ~`chunk` rows; returns the number of parts.

    A share `tail_share` of each part's events comes from long-tail pairs, one fresh query each.
    """
    rng0 = np.random.default_rng([seed, 4])
    queries, qlang, qtopic = query_vocab()
    qcdf, qperm = zipf_sampler(len(queries), 1.05, rng0)
    words = tail_words(rng0) if tail_share > 0 else None
    n_pins = len(pin_lang)
    # pin popularity inside a topic: Zipf over that topic's pins (ranks shuffled once)
    pw = 1.0 / (rng0.permutation(n_pins) + 1.0) ** 0.9
    order, starts, counts = group_index(pin_topic, N_TOPICS)
    topic_cdfs = []
    for t in range(N_TOPICS):
        w = pw[order[starts[t]: starts[t] + counts[t]]]
        c = np.cumsum(w)
        topic_cdfs.append(c / c[-1])
    ucdf, uperm = zipf_sampler(n_users, 0.9, rng0)
    # upper-case / padded surface forms of a query that normalisation merges
    variants = pl.DataFrame({"q": queries}).select(
        pl.col("q"), pl.col("q").str.to_uppercase().alias("up"),
        pl.concat_str([pl.lit(" "), pl.col("q"), pl.lit("  ")]).alias("pad"))
    countries = pl.Series([LOCALE[lg][0] for lg in LANGS])
    locales = pl.Series([LOCALE[lg][1] for lg in LANGS])
    eng = out / "engagements"
    eng.mkdir(parents=True, exist_ok=True)
    written, part = 0, 0
    while written < n_events:
        rng = np.random.default_rng([seed, 5, part])
        part_events = min(chunk, n_events - written)
        tail_target = int(round(part_events * tail_share))
        target = part_events - tail_target
        # pairs: heavy-tailed events per pair (mean ~5), generate a few more than needed and cut
        n_pairs = int(target / 4) + 16
        per_pair = np.minimum(1 + rng.zipf(1.9, n_pairs), 400)
        cut = np.searchsorted(np.cumsum(per_pair), target)
        per_pair = per_pair[: cut + 1]
        per_pair[-1] -= int(per_pair.sum() - target)
        per_pair = per_pair[per_pair > 0]
        n_pairs = len(per_pair)
        q = draw(qcdf, qperm, rng, n_pairs)
        t = qtopic[q]
        pin = np.empty(n_pairs, dtype=np.int64)
        for k in range(N_TOPICS):  # a pin of the query's topic, by popularity
            m = t == k
            if m.any():
                j = np.minimum(np.searchsorted(topic_cdfs[k], rng.random(int(m.sum()))), counts[k] - 1)
                pin[m] = order[starts[k] + j]
        imp_only = rng.random(n_pairs) < 0.10
        rows = np.repeat(np.arange(n_pairs), per_pair)
        m_rows = len(rows)
        action = np.searchsorted(np.cumsum(ACTION_P), rng.random(m_rows) * 0.999999)
        # the first event of an engaged pair is a non-impression, so ~10% of pairs (imp_only) have impressions only
        first = np.concatenate([[0], np.cumsum(per_pair)[:-1]])
        action[first] = 1 + np.searchsorted(np.cumsum(ENGAGED_P), rng.random(n_pairs) * 0.999999)
        action[imp_only[rows]] = 0
        user = draw(ucdf, uperm, rng, m_rows)
        form = rng.random(m_rows)
        qi = pl.Series(q[rows])
        qtext = pl.select(
            pl.when(pl.lit(pl.Series(form < 0.04))).then(pl.lit(variants["up"].gather(qi)))
            .when(pl.lit(pl.Series(form < 0.06))).then(pl.lit(variants["pad"].gather(qi)))
            .otherwise(pl.lit(queries.gather(qi)))).to_series()
        if tail_target:  # long-tail pairs after the head ones: a fresh query per pair, 1-3 events
            tail_per = 1 + np.searchsorted(np.cumsum(TAIL_EVENTS_P), rng.random(int(tail_target / 1.3) + 16) * 0.999999)
            tail_per = tail_per[: np.searchsorted(np.cumsum(tail_per), tail_target) + 1]
            tail_per[-1] -= int(tail_per.sum() - tail_target)
            tail_per = tail_per[tail_per > 0]
            tq = draw(qcdf, qperm, rng, len(tail_per))
            tpin = np.empty(len(tail_per), dtype=np.int64)
            for k in range(N_TOPICS):
                m = qtopic[tq] == k
                if m.any():
                    j = np.minimum(np.searchsorted(topic_cdfs[k], rng.random(int(m.sum()))), counts[k] - 1)
                    tpin[m] = order[starts[k] + j]
            trows = np.repeat(np.arange(len(tail_per)), tail_per)
            taction = np.searchsorted(np.cumsum(ACTION_P), rng.random(len(trows)) * 0.999999)
            ttext = tail_queries(rng, queries.gather(pl.Series(tq)), words).gather(pl.Series(trows))
            qtext = pl.concat([qtext, ttext])
            q_all = np.concatenate([q[rows], tq[trows]])
            pin_rows = np.concatenate([pin[rows], tpin[trows]])
            action = np.concatenate([action, taction])
            user = np.concatenate([user, draw(ucdf, uperm, rng, len(trows))])
            m_rows += len(trows)
        else:
            q_all, pin_rows = q[rows], pin[rows]
        ql = pl.Series(qlang[q_all])
        df = pl.DataFrame({
            "query": qtext,
            "pin_id": ids("P", pin_rows),
            "action": pl.Series(ACTIONS).gather(pl.Series(action)),
            "user_id": ids("U", user),
            "ts": pl.Series(T0 + rng.integers(0, YEAR_US // 2, m_rows)).cast(pl.Datetime("us", "UTC")),
            "country": countries.gather(ql),
            "locale": locales.gather(ql),
        })
        write(df, eng / f"part-{part:05d}.parquet")
        written += m_rows
        part += 1
    return part


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="Write a synthetic pins/boards/saves/engagements set (Parquet).")
    ap.add_argument("--out", required=True)
    ap.add_argument("--pins", type=int, default=1_000_000)
    ap.add_argument("--saves", type=int, default=5_000_000)
    ap.add_argument("--engagements", type=int, default=20_000_000)
    ap.add_argument("--boards", type=int, default=None, help="default: pins / 4")
    ap.add_argument("--users", type=int, default=None, help="default: pins / 2")
    ap.add_argument("--repin-share", type=float, default=0.4)
    ap.add_argument("--chunk", type=int, default=2_000_000, help="engagement rows per part file")
    ap.add_argument("--tail-share", type=float, default=0.25,
                    help="share of engagement events from long-tail queries (one fresh query per pair; 0: head only)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if min(args.pins, args.saves, args.engagements) < 1:
        ap.error("--pins, --saves and --engagements must be >= 1")
    if not 0.0 <= args.tail_share < 1.0:
        ap.error("--tail-share must be in [0, 1)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n_boards = args.boards or max(1, args.pins // 4)
    n_users = args.users or max(1, args.pins // 2)
    t0 = time.perf_counter()
    pins, pin_lang, pin_topic = make_pins(args.pins, args.repin_share, args.seed)
    write(pins, out / "pins.parquet")
    del pins
    boards, board_lang, board_topic = make_boards(n_boards, args.seed)
    write(boards, out / "boards.parquet")
    del boards
    saves = make_saves(args.saves, pin_lang, pin_topic, board_lang, board_topic, n_users, args.seed)
    write(saves, out / "saves.parquet")
    del saves
    parts = write_engagements(out, args.engagements, pin_lang, pin_topic, n_users, args.seed, args.chunk, args.tail_share)
    info = {"pins": args.pins, "boards": n_boards, "saves": args.saves, "engagements": args.engagements, "tail_share": args.tail_share,
            "engagement_parts": parts, "users": n_users, "repin_share": args.repin_share, "seed": args.seed,
            "languages": list(LANGS), "seconds": round(time.perf_counter() - t0, 1),
            "bytes": sum(p.stat().st_size for p in out.rglob("*.parquet"))}
    (out / "synthetic.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info))
    return info


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
