"""Language stage: whole pin text (title, description, board titles), the build's prior, the floor, determinism."""

from __future__ import annotations

import math
import pickle

import polars as pl
import pytest

from pinfeatures.build.language import (
    UND,
    LanguageSettings,
    PinTexts,
    decide_languages,
    detect_languages,
    detect_texts,
    estimate_prior,
    quick_languages,
    uniform_prior,
)
from pinfeatures.build.language_model import languages
from pinfeatures.build.settings import BuildSettings
from pinfeatures.errors import ConfigError

TEXTS = {
    "en": "The best chocolate cake recipe for a birthday party with friends",
    "fr": "La meilleure recette de gâteau au chocolat pour un anniversaire",
    "de": "Das beste Rezept für Schokoladenkuchen zum Geburtstag mit Freunden",
    "es": "La mejor receta de pastel de chocolate para una fiesta de cumpleaños",
    "ar": "أفضل وصفة كعكة الشوكولاتة لحفلة عيد ميلاد مع الأصدقاء",
    "ru": "Лучший рецепт шоколадного торта на день рождения с друзьями",
}
# long, sure English texts: a build made mostly of them has an English-heavy prior
ENGLISH = [
    "Small garden ideas: how to plant flowers on a tiny balcony this summer",
    "Living room decor with natural wood and plants, cozy and bright",
    "Summer dress outfit inspiration that I saved for the weekend",
    "Everything you need to know about running shoes, with tips from our readers",
    "A collection of wedding hairstyles that I want to try this year",
    "Step by step guide to watercolor painting for beginners",
]


def _pins(titles: list[str], boards: list[list[str]] | None = None) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    ids = [f"p{i}" for i in range(len(titles))]
    pins = pl.DataFrame({"pin_id": ids, "title": titles, "description": [None] * len(titles)}, schema_overrides={"description": pl.Utf8})
    if boards is None:
        return pins, None
    return pins, pl.DataFrame({"pin_id": ids, "boards": boards}, schema={"pin_id": pl.Utf8, "boards": pl.List(pl.Utf8)})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ok", UND),  # 2 letters < 3
        ("12345 !!! 🎂🎂", UND),
        ("", UND),
        ("猫", UND),  # one character: too short even for CJK
        ("ねこ", "ja"),  # two kana: enough
        ("猫のケーキ", "ja"),  # kanji + kana: Japanese
        ("고양이 케이크", "ko"),
        ("עוגת שוקולד טעימה", "he"),
        ("Ελληνική σαλάτα", "el"),
        ("Wow", None),  # 3 letters: ask the model
        ("साड़ी", None),  # 2 letters + 3 vowel signs: marks count, so the model is asked
        ("简单的蛋糕做法", None),  # Han only: zh-cn, zh-tw or ja, ask the model
    ],
)
def test_quick_languages(text, expected):
    assert quick_languages(pl.Series([text]), 3).to_list() == [expected]


def test_estimate_prior_mixes_the_build_with_uniform():
    langs = languages()
    prior = estimate_prior({"en": 3, "de": 1, "xx": 50, "fr": 0}, 0.9)  # xx: not a langdetect language, ignored
    assert prior.probs["en"] == pytest.approx(0.9 * 3 / 4 + 0.1 / len(langs))
    assert prior.probs["de"] == pytest.approx(0.9 * 1 / 4 + 0.1 / len(langs))
    assert prior.probs["fr"] == pytest.approx(0.1 / len(langs))
    assert math.fsum(prior.probs.values()) == pytest.approx(1.0)
    assert dict(prior.counts) == {"en": 3, "de": 1}
    assert estimate_prior({}, 0.9).probs == uniform_prior().probs
    assert estimate_prior({"en": 5}, 0.0).probs == pytest.approx(uniform_prior().probs)


def test_prior_decides_a_short_title():
    """'Cozy reading nook' is Tagalog to langdetect's profiles alone; English in an English build."""
    settings = LanguageSettings()
    assert detect_texts(["Cozy reading nook"], uniform_prior(), settings) == {"Cozy reading nook": "tl"}
    pins, _ = _pins(ENGLISH + [TEXTS["de"], "Cozy reading nook"])
    out, prior, stats = detect_languages(pins, None, settings)
    assert out.get_column("language").to_list() == ["en"] * 6 + ["de", "en"]
    assert dict(prior.counts) == {"en": 6, "de": 1}
    assert stats["prior"]["sure_pins"] == 7 and stats["given"] == 0 and stats["distinct_texts_detected"] == 8


@pytest.mark.parametrize(
    "title, boards, alone, with_boards, by_boards_alone",
    [
        # a short Portuguese title reads as Spanish; its board says Portuguese
        ("Sala de estar pequena", ["decoração"], "es", "pt", 0),
        # an emoji title says nothing: its boards alone tell; without boards it is und
        ("😍😍😍", ["chocolate cake", "my chocolate cake board"], UND, "en", 1),
        # boards in other languages (kana, which alone would mean Japanese; French and English)
        # cannot outvote the pin's own words: each board's say is bounded
        ("The best small garden ever", ["小さな庭", "small garden"], "en", "en", 0),
        ("Einfacher Schokoladenkuchen", ["gâteau au chocolat", "chocolate cake", "my chocolate cake board"], "de", "de", 0),
    ],
)
def test_board_titles_are_bounded_evidence(title, boards, alone, with_boards, by_boards_alone):
    sure = ENGLISH + [TEXTS["de"]]  # an English build with one German pin
    titles = sure + [title]
    without, _, _ = detect_languages(*_pins(titles))
    assert without.get_column("language").to_list() == ["en"] * 6 + ["de", alone]
    with_, _, stats = detect_languages(*_pins(titles, [[]] * len(sure) + [boards]))
    assert with_.get_column("language").to_list() == ["en"] * 6 + ["de", with_boards]
    assert with_.columns == without.columns == ["pin_id", "title", "description", "language"]
    assert stats["told_by_boards_alone"] == by_boards_alone
    assert stats["distinct_board_titles"] == len(boards)


def test_floor_gives_und():
    """Below min_confidence the answer is `und`; with the floor at 0 the best guess is kept."""
    pins, _ = _pins(ENGLISH + ["garden ideas"])
    strict, _, stats = detect_languages(pins, None, LanguageSettings(min_confidence=0.99))
    assert strict.get_column("language").to_list()[-1] == UND
    assert stats["und"] == stats["below_min_confidence"] >= 1
    loose, _, stats = detect_languages(pins, None, LanguageSettings(min_confidence=0.0))
    assert loose.get_column("language").to_list()[-1] == "en"
    assert stats["und"] == 0


def test_input_column_wins_and_counts_towards_the_prior():
    pins = pl.DataFrame(
        {
            "pin_id": ["a", "b", "c", "d", "e"],
            "title": [TEXTS["en"], TEXTS["fr"], "ok", "ねこ", None],
            "description": [None, "", None, None, None],
            "language": [" FR ", None, "", None, "pt-BR"],
        }
    )
    out, prior, stats = detect_languages(pins)
    assert out.get_column("language").to_list() == ["fr", "fr", UND, "ja", "pt-br"]
    assert out.columns == pins.columns
    assert stats["given"] == 2 and stats["distinct_texts_detected"] == 3
    assert dict(prior.counts) == {"fr": 2, "ja": 1}  # pt-br is not a langdetect code: not in the prior


def test_deterministic_whatever_the_order():
    titles = list(TEXTS.values()) + ENGLISH + ["Cozy reading nook", "garden ideas", "Wow", "ok"]
    pins, boards = _pins(titles, [["home ideas"]] * len(titles))
    a, _, sa = detect_languages(pins, boards)
    b, _, sb = detect_languages(pins.reverse(), boards.sample(fraction=1.0, shuffle=True, seed=3))
    assert a.get_column("language").to_list() == b.reverse().get_column("language").to_list()
    assert sa == sb
    assert a.get_column("language").to_list()[:6] == list(TEXTS)


def test_max_chars_bounds_the_text():
    # the first 10 characters are Japanese: the long English tail is never read
    pins = pl.DataFrame({"pin_id": ["j"], "title": ["ねこのケーキ です"], "description": [TEXTS["en"] * 50]})
    out, _, _ = detect_languages(pins, None, LanguageSettings(max_chars=10))
    assert out.get_column("language").to_list() == ["ja"]


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("language_min_confidence", 1.5, "language_min_confidence must be between 0 and 1"),
        ("language_prior_weight", -0.1, "language_prior_weight must be between 0 and 1"),
        ("language_board_agreement", 1.01, "language_board_agreement must be between 0 and 1"),
        ("language_temperature", 0.0, "language_temperature must be between 1e-06 and 1e[+]06, got 0"),
        ("language_min_letters", 0, "language_min_letters must be between 1 and 1000000, got 0"),
    ],
)
def test_bad_settings(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        BuildSettings(**{setting: value})


def test_shards_with_summed_counts_answer_as_the_whole_build():
    """Two halves: their sure counts add up to the whole build's, and with that prior each half answers as the whole."""
    titles = ENGLISH + [TEXTS["de"], TEXTS["fr"], "Cozy reading nook", "garden ideas", "Homemade pizza dough", "Wow"]
    pins, boards = _pins(titles, [["home ideas"]] * len(titles))
    whole, prior, _ = detect_languages(pins, boards)
    halves = [pins[::2], pins[1::2]]
    settings = LanguageSettings()
    # as build/shard.py does it: each half scored once, pickled, its sure counts summed, then
    # decided under the summed prior from the unpickled scores
    scored = [pickle.loads(pickle.dumps(PinTexts(half, boards, settings))) for half in halves]
    counts: dict[str, int] = {}
    for texts in scored:
        for lang, n in texts.sure_counts(settings).items():
            counts[lang] = counts.get(lang, 0) + n
    assert counts == dict(prior.counts)
    shard_prior = estimate_prior(counts, settings.prior_weight)
    parts = [decide_languages(texts, settings, shard_prior)[0] for texts in scored]
    assert pl.concat(parts).sort("pin_id").equals(whole.sort("pin_id"))
    # without the build's prior a half may answer differently: the prior is a global fact
    assert detect_languages(halves[0], boards)[1].probs != prior.probs
