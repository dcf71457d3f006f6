"""Variant specs: presets, explicit lists, normalisation and bad specs."""

from __future__ import annotations

import pytest

from pinfeatures.contracts import REJECT_SCHEMA, SOURCES, expand, make_rejects, variant_name, variant_sources
from pinfeatures.errors import ConfigError

FULL = "caption+title+description+boards+queries"


def test_ladder():
    assert expand("ladder") == [
        "caption",
        "caption+title",
        "caption+title+description",
        "caption+title+description+boards",
        FULL,
    ]
    assert expand("  ladder ") == expand("ladder")


def test_loo():
    assert expand("loo") == [
        FULL,
        "title+description+boards+queries",
        "caption+description+boards+queries",
        "caption+title+boards+queries",
        "caption+title+description+queries",
        "caption+title+description+boards",
    ]


def test_all_is_every_nonempty_combination_once():
    names = expand("all")
    assert len(names) == 31 == len(set(names))
    assert names[:5] == list(SOURCES)  # singletons first, in ladder order
    assert names[-1] == FULL
    assert {frozenset(variant_sources(n)) for n in names} == {
        frozenset(s for i, s in enumerate(SOURCES) if mask >> i & 1) for mask in range(1, 32)
    }
    for n in names:  # every name is in canonical (ladder) order
        assert variant_name(set(n.split("+"))) == n


def test_explicit_list_normalises_order_and_drops_duplicates():
    assert expand("title,title+description,caption+queries") == ["title", "title+description", "caption+queries"]
    assert expand(" queries+caption , description+title,title+description, title ") == ["caption+queries", "title+description", "title"]
    assert expand("boards") == ["boards"]
    assert expand("queries+boards+description+title+caption") == [FULL]


def test_variant_sources_and_name():
    assert variant_sources("caption+title") == ("caption", "title")
    assert variant_sources("title+caption") == ("caption", "title")
    assert variant_name(("queries", "title")) == "title+queries"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty spec"),
        ("   ", "empty spec"),
        ("ladderr", "unknown source 'ladderr'"),
        ("title,image", "unknown source 'image'"),
        ("title+Title", "unknown source 'Title'"),
        ("title,,boards", "empty item"),
        ("title,", "empty item"),
        ("title+", "unknown source ''"),
        ("title+title", "repeated"),
        ("caption+boards+caption", "repeated"),
        ("ladder+title", "unknown source 'ladder'"),
    ],
)
def test_bad_specs(spec, message):
    with pytest.raises(ConfigError, match="variants") as err:
        expand(spec)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_none_spec():
    with pytest.raises(ConfigError):
        expand(None)  # type: ignore[arg-type]


def test_bad_spec_messages_in_full():
    # a bare word may be a misspelt preset: the message names them; a `+` variant gets no such hint
    sources = "caption, title, description, boards, queries"
    with pytest.raises(ConfigError) as err:
        expand("ladderr")
    assert str(err.value) == f"variants: unknown source 'ladderr' in variant 'ladderr'; sources are {sources}; presets are ladder, loo, all"
    with pytest.raises(ConfigError) as err:
        expand("ladder+title")
    assert str(err.value) == f"variants: unknown source 'ladder' in variant 'ladder+title'; sources are {sources}"


def test_make_rejects_exact_frame():
    rows = [{"row": 3, "column": "pin_id", "reason": "missing_id", "detail": "empty", "record": '{"pin_id": ""}'},
            {"row": 7, "reason": "duplicate_pin"}]  # keys left out become nulls
    got = make_rejects("pins", "in/pins.csv", rows)
    assert got.schema == REJECT_SCHEMA
    assert got.rows() == [("pins", "in/pins.csv", 3, "pin_id", "missing_id", "empty", '{"pin_id": ""}'),
                          ("pins", "in/pins.csv", 7, None, "duplicate_pin", None, None)]
    bare = make_rejects("events", "e.jsonl", [{"row": 1, "reason": "unknown_pin"}])  # all-null columns keep their types
    assert bare.schema == REJECT_SCHEMA and bare.rows() == [("events", "e.jsonl", 1, None, "unknown_pin", None, None)]
    none = make_rejects("pins", "in/pins.csv", [])
    assert none.schema == REJECT_SCHEMA and none.height == 0
