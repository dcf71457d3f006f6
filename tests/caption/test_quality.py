"""The degenerate-caption filter on constructed strings."""

from __future__ import annotations

import pytest

from pinfeatures.caption.quality import (
    clean_caption,
    degenerate_reason,
    strip_boilerplate,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("An image of a red dress on a hanger", "A red dress on a hanger"),
        ("a photo of a bowl of ramen", "A bowl of ramen"),
        ("arafed woman standing in a kitchen", "Woman standing in a kitchen"),
        ("This image shows a cozy living room", "A cozy living room"),
        ("there is a cat sleeping on the sofa", "A cat sleeping on the sofa"),
        ("A picture of an image of a garden", "A garden"),
        ("  A wooden table   with\tflowers \n", "A wooden table with flowers"),
        ("Two dogs on a beach", "Two dogs on a beach"),
        ("Photography tips for sunsets", "Photography tips for sunsets"),  # 'photo' inside a word stays
        ("Café au lait in a blue mug", "Café au lait in a blue mug"),
    ],
)
def test_boilerplate_is_stripped_and_good_captions_pass(raw, expected):
    assert clean_caption(raw) == (expected, "ok")


@pytest.mark.parametrize(
    "raw",
    [
        "", "   ", None, "!!!", "... ,", "a photo of", "An image.", "image",
        "dog dog dog dog", "the the the the the",
        "on the table on the table on the table",
        "red red blue red blue red blue red",
        "a a a b a a a b a a",
        "an image of a photo of",
    ],
)
def test_degenerate_captions_are_flagged(raw):
    assert clean_caption(raw) == (None, "degenerate")


def test_reasons_name_the_rule():
    assert degenerate_reason("") == "empty"
    assert "repeated" in degenerate_reason("cat cat cat cat")
    assert "repeated" in degenerate_reason("in the box in the box in the box")
    assert degenerate_reason("a b a b c a b a b a") in ("too few distinct words", "phrase 'a b' repeated")
    assert degenerate_reason("a cat and a dog") is None
    # three repeats of one word in a row is still a caption ("very very very")
    assert degenerate_reason("a very very very tall tree") is None


def test_hostile_text_does_not_blow_up():
    long = "word " * 20000
    assert clean_caption(long) == (None, "degenerate")
    assert clean_caption("\x00\x01 a cat \u202e on a mat")[1] == "ok"
    # stripping is bounded (4 passes), so a hostile prefix chain cannot loop for long
    assert strip_boilerplate("an image of " * 50 + "a cat").endswith("a cat")
    assert clean_caption(12345)[1] == "degenerate"  # no letters
