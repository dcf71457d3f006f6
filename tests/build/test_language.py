"""Language stage: seeded langdetect, script shortcuts, the input column, serial vs parallel."""

from __future__ import annotations

import polars as pl
import pytest

from pinfeatures.build.language import (
    UND,
    detect_languages,
    detect_many,
    quick_language,
)

TEXTS = {
    "en": "The best chocolate cake recipe for a birthday party with friends",
    "fr": "La meilleure recette de gâteau au chocolat pour un anniversaire",
    "de": "Das beste Rezept für Schokoladenkuchen zum Geburtstag mit Freunden",
    "es": "La mejor receta de pastel de chocolate para una fiesta de cumpleaños",
    "ar": "أفضل وصفة كعكة الشوكولاتة لحفلة عيد ميلاد مع الأصدقاء",
    "ru": "Лучший рецепт шоколадного торта на день рождения с друзьями",
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ok", UND),
        ("12345 !!! 🎂🎂", UND),
        ("", UND),
        ("猫", UND),  # one character: too short even for CJK
        ("ねこ", "ja"),  # two kana: enough
        ("猫のケーキ", "ja"),  # kanji + kana: Japanese
        ("고양이 케이크", "ko"),
        ("עוגת שוקולד טעימה", "he"),
        ("Ελληνική σαλάτα", "el"),
        ("Chocolate cake recipe", None),  # Latin: ask langdetect
        ("简单的蛋糕做法", None),  # Han only: zh-cn or zh-tw, ask langdetect
    ],
)
def test_quick_language(text, expected):
    assert quick_language(text, 8) == expected


def test_detect_many_values_and_determinism():
    texts = list(TEXTS.values()) + ["ok", "ねこのケーキ"] + list(TEXTS.values())  # duplicates are detected once
    first, asked = detect_many(texts, seed=0, workers=1)
    assert asked == len(TEXTS)
    assert {lang: first[t] for lang, t in TEXTS.items()} == {lang: lang for lang in TEXTS}
    assert first["ok"] == UND and first["ねこのケーキ"] == "ja"
    for _ in range(2):
        again, _ = detect_many(list(reversed(texts)), seed=0, workers=1)
        assert again == first


def _many_texts(n: int) -> list[str]:
    words = {
        "en": "cake garden dress recipe summer kitchen bedroom wedding flowers easy".split(),
        "fr": "gâteau jardin robe recette été cuisine chambre mariage fleurs facile".split(),
        "de": "Kuchen Garten Kleid Rezept Sommer Küche Schlafzimmer Hochzeit Blumen einfach".split(),
        "es": "pastel jardín vestido receta verano cocina dormitorio boda flores fácil".split(),
        "pt": "bolo jardim vestido receita verão cozinha quarto casamento flores fácil".split(),
    }
    langs = list(words)
    out = []
    for i in range(n):
        w = words[langs[i % len(langs)]]
        out.append(" ".join(w[(i // 5 + j * 3) % 10] for j in range(4)) + f" {w[(i // 50) % 10]}{i // 500}")
    return list(dict.fromkeys(out))


def test_serial_and_parallel_paths_agree(monkeypatch):
    """The process pool (spawned workers, chunked) answers exactly what one process answers.

    langdetect runs at a few hundred texts/s on this 2-core box, so instead of >2000 texts the
    pool threshold and chunk size are lowered: the real pool path still runs (spawn, per-process
    seeding, several chunks per worker), on 300 distinct texts.
    """
    import pinfeatures.build.language_model as langid

    texts = _many_texts(300)
    assert len(texts) == 300
    serial = langid.detect_langdetect(texts, seed=0, workers=1)
    monkeypatch.setattr(langid, "_PARALLEL_MIN", 100)
    monkeypatch.setattr(langid, "_CHUNK", 40)  # 8 chunks over 2 workers
    parallel = langid.detect_langdetect(texts, seed=0, workers=2)
    assert parallel == serial
    # the five vocabularies come back mostly as themselves (short texts leave langdetect some room)
    hits = sum(serial[i] == ("en", "fr", "de", "es", "pt")[i % 5] for i in range(len(texts)))
    assert hits >= 0.6 * len(texts)
    # and the build's path (numpy model + langdetect for the unsure) agrees with it on most texts
    hybrid, asked = detect_many(texts, seed=0, workers=2)
    assert asked == len(texts)
    assert sum(hybrid[t] == serial[i] for i, t in enumerate(texts)) >= 0.97 * len(texts)


def test_detect_languages_input_column_wins():
    pins = pl.DataFrame(
        {
            "pin_id": ["a", "b", "c", "d", "e"],
            "title": [TEXTS["en"], TEXTS["fr"], "ok", "ねこ", None],
            "description": [None, "", None, None, None],
            "language": [" FR ", None, "", None, "pt-BR"],
        }
    )
    out, stats = detect_languages(pins, seed=0, workers=1)
    assert out.get_column("language").to_list() == ["fr", "fr", UND, "ja", "pt-br"]
    assert out.columns == pins.columns
    assert stats["given"] == 2
    assert stats["sent_to_langdetect"] == 1  # only b's French text reaches langdetect


def test_detect_languages_without_language_column_and_seed_stability():
    pins = pl.DataFrame({"pin_id": list(TEXTS), "title": list(TEXTS.values()), "description": [None] * len(TEXTS)})
    a, _ = detect_languages(pins, seed=0, workers=1)
    b, _ = detect_languages(pins.reverse(), seed=0, workers=1)
    assert a.get_column("language").to_list() == list(TEXTS)
    assert b.reverse().get_column("language").to_list() == list(TEXTS)


def test_short_text_is_und_and_max_chars_bounds_the_text():
    pins = pl.DataFrame({"pin_id": ["a", "b"], "title": ["Hi!", "ab"], "description": ["", "cd"]})
    out, stats = detect_languages(pins, seed=0, workers=1)
    assert out.get_column("language").to_list() == [UND, UND] and stats["sent_to_langdetect"] == 0
    # the first 10 characters are Japanese: the long English tail is never read
    pins = pl.DataFrame({"pin_id": ["j"], "title": ["ねこのケーキ です"], "description": [TEXTS["en"] * 50]})
    out, _ = detect_languages(pins, max_chars=10, seed=0, workers=1)
    assert out.get_column("language").to_list() == ["ja"]
