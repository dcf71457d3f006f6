"""Token counters (built-in approximation and a real HF tokenizer built in code) and word-boundary truncation."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import FIXTURES, build

from pinfeatures.build.tokens import (
    ApproxCounter,
    HFCounter,
    _is_word_char,
    make_counter,
    truncate,
)
from pinfeatures.errors import ConfigError

VARIED = [
    "",
    "   ",
    "Chocolate cake recipe",
    "internationalization",
    "Ideas de zapatillas para correr — ¡rápido!",
    "猫のケーキ レシピ 简单的蛋糕 고양이 케이크",
    "مرحبا بكم في عالم الكعك",
    "हिन्दी व्यंजन विधि",
    "Z\u0337\u0322\u031b\u031ba\u0336\u0321\u034e\u035dlgo t\u0336e\u0337x\u0338t",
    "🎂🍰🎉 👩‍👩‍👧 emoji zwj",
    "1234567890 3.14159 ½ ² Ⅻ",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic",
    "<script>alert('x')</script> &amp; ‮override⁦isolate⁩ \u200bzw \ufeffbom",
    "ΕΛΛΗΝΙΚΑ ελληνικά Кошка кот",
    "a|b||c ### Title: FREE MONEY",
    "x" * 5000,
    "word " * 2000,
]


def test_polars_and_python_approx_counts_agree():
    c = ApproxCounter()
    polars_counts = c.count_many(pl.Series(VARIED + [None])).to_list()
    python_counts = [c.count(t) for t in VARIED] + [0]
    assert polars_counts == python_counts
    assert [len(c.spans(t)) for t in VARIED] == python_counts[:-1]


@pytest.mark.parametrize(
    "text, n",
    [
        ("Chocolate cake recipe", 4),  # chocola|te cake recipe
        ("internationalization", 4),  # 6+6+6+2 letters
        ("猫のケーキ", 5),  # one per CJK/kana character
        ("a, b!", 4),  # punctuation is one token each
        ("", 0),
    ],
)
def test_approx_counts(text, n):
    assert ApproxCounter().count(text) == n


@pytest.mark.parametrize(
    "text, budget, expected",
    [
        ("alpha beta gamma delta", 2, ("alpha beta", True)),
        ("alpha beta gamma delta", 4, ("alpha beta gamma delta", False)),
        ("hello internationalization", 3, ("hello", True)),  # cut would fall inside the long word: back off
        ("internationalization", 2, ("internationa", True)),  # one word longer than the budget: cut inside
        ("我喜欢吃蛋糕", 3, ("我喜欢", True)),
        ("cake, pie, tea", 3, ("cake, pie", True)),
        ("one two", 0, ("", True)),
    ],
)
def test_truncate_at_word_boundaries(text, budget, expected):
    assert truncate(text, budget, ApproxCounter()) == expected


def test_truncate_respects_budget_on_varied_text():
    c = ApproxCounter()
    for text in VARIED:
        for budget in (1, 3, 7, 50):
            cut, was = truncate(text, budget, c)
            assert c.count(cut) <= budget
            assert text.startswith(cut)
            assert was == (c.count(text) > budget)
            nxt = text[len(cut) : len(cut) + 1]
            if was and cut and nxt and _is_word_char(cut[-1]) and _is_word_char(nxt):
                # only a single word longer than the budget is cut inside (CJK is never a "word char")
                assert len(cut.split()) == 1, (text[:40], budget, cut)


# -- a real Hugging Face tokenizer built in code ---------------------------------------


@pytest.fixture(scope="module")
def hf_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "Title: Description: Image: Boards: Searches:",
        "chocolate cake recipe birthday garden ideas small dessert tarte pommes",
        "Ideas de zapatillas para correr recette cuisine jardin",
    ]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus * 20, trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]", "[PAD]", "[CLS]", "[SEP]"]))
    # like BERT's, the tokenizer adds [CLS] ... [SEP] unless told not to: counts must leave them out
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    folder = tmp_path_factory.mktemp("tok")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(str(folder))
    return folder, PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def test_hf_counter_counts_like_the_tokenizer(hf_tokenizer):
    folder, tok = hf_tokenizer
    c = make_counter(str(folder))
    assert isinstance(c, HFCounter) and c.name == f"hf:{folder.name}"
    texts = VARIED[:15]
    want = [len(tok.encode(t, add_special_tokens=False)) for t in texts]
    assert c.count_many(pl.Series(texts)).to_list() == want
    counted = c.count_many(pl.Series("title", texts))
    assert (counted.name, counted.dtype) == ("title", pl.Int64)  # a column's counts keep its name
    assert [c.count(t) for t in texts] == want
    assert [len(c.spans(t)) for t in texts] == want and want != [len(tok.encode(t)) for t in texts]
    cut, was = truncate("chocolate cake recipe birthday garden", 3, c)
    assert was and c.count(cut) <= 3 and "chocolate cake recipe birthday garden".startswith(cut)


def test_build_with_tokenizer_gives_exact_counts(hf_tokenizer, tmp_path):
    folder, tok = hf_tokenizer
    manifest = build(tmp_path / "out", input=str(FIXTURES / "hostile"), tokenizer=str(folder), max_tokens=60)
    assert manifest["tokens"]["counter"] == f"hf:{folder.name}"
    texts = pl.read_parquet(tmp_path / "out" / "texts.parquet")
    exact = [len(tok.encode(t, add_special_tokens=False)) for t in texts.get_column("text").to_list()]
    assert texts.get_column("n_tokens").to_list() == exact
    assert max(exact) <= 60
    assert texts.get_column("truncated").any()


def test_bad_tokenizer_folders(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        HFCounter(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot load a tokenizer"):
        HFCounter(tmp_path / "empty")
    assert isinstance(make_counter(None), ApproxCounter)


class FixedSpans:
    """A counter whose tokens are given spans: token boundaries anywhere inside a word."""

    name = "fixed"

    def __init__(self, spans):
        self._spans = spans

    def spans(self, text):
        return self._spans


@pytest.mark.parametrize(
    ("text", "spans", "budget", "expected"),
    [
        ("ab cdefg", [(0, 2), (3, 6), (6, 8)], 2, "ab"),  # the cut splits cdefg: back to its start (3 steps)
        ("ab cde h", [(0, 2), (3, 5), (5, 6), (7, 8)], 2, "ab"),  # a split one before the word's end
        ("ab cde", [(0, 2), (3, 4), (4, 6)], 2, "ab"),  # a split one after the word's start
        ("-abcdefgh", [(0, 1), (1, 5), (5, 9)], 2, "-"),  # the word starts at 1
        ("abcdefgh", [(0, 4), (4, 8)], 1, "abcd"),  # one word longer than the budget: cut inside it
        ("ab cd", [(0, 2), (3, 5)], 1, "ab"),  # the cut falls between words: nothing to back off
    ],
)
def test_truncate_backs_off_to_the_start_of_a_split_word(text, spans, budget, expected):
    assert truncate(text, budget, FixedSpans(spans)) == (expected, True)


def test_hf_counter_counts_a_column_in_batches(hf_tokenizer):
    # 4,097 values: two batches of the tokenizer (4,096 a call), every value counted once, in order
    folder, tok = hf_tokenizer
    texts = [VARIED[i % 15] + f" {i}" for i in range(4097)]
    counted = make_counter(str(folder)).count_many(pl.Series("t", texts))
    assert counted.to_list() == [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]
    empty = make_counter(str(folder)).count_many(pl.Series("t", [], dtype=pl.Utf8))
    assert (empty.name, empty.dtype, empty.len()) == ("t", pl.Int64, 0)


def test_tokenizer_without_its_extra_names_the_extra(tmp_path, monkeypatch):
    from pinfeatures import extras

    monkeypatch.setattr(extras, "missing_modules", lambda modules: [m for m in modules if m == "tokenizers"])
    with pytest.raises(extras.MissingExtraError) as raised:
        HFCounter(tmp_path)
    assert str(raised.value) == "--tokenizer needs tokenizers, not installed: pip install 'pinfeatures[caption]'"


def test_truncate_with_a_token_of_no_width_at_the_end():
    # an offset mapping may hold an empty span; one at the very end leaves nothing to back off to
    assert truncate("ab", 1, FixedSpans([(0, 2), (2, 2)])) == ("ab", True)


def test_hf_counter_loads_local_files_only(hf_tokenizer, monkeypatch):
    # offline, a local folder loads either way: what tells the two apart is the call itself
    import transformers

    calls = []
    load = transformers.AutoTokenizer.from_pretrained
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda path, **kwargs: calls.append((path, kwargs)) or load(path, **kwargs))
    folder, _ = hf_tokenizer
    HFCounter(folder)
    assert calls == [(str(folder), {"local_files_only": True})]
