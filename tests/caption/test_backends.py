"""Caption backends: tiny models of real architectures, built here, loaded through the real loader."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fixtures"))

from make_demo_model import build_tiny_blip, build_tiny_coca, build_tiny_idefics3
from PIL import Image

from pinfeatures.caption.backends import (
    HFCaptioner,
    OpenClipCocaCaptioner,
    demo_model_path,
    load_captioner,
    resolve_device,
    resolve_dtype,
    resolve_model,
)
from pinfeatures.caption.settings import CaptionSettings
from pinfeatures.errors import ConfigError, ModelError

IMAGES = [Image.new("RGB", (48, 40), c) for c in ("red", "navy", "green")]


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory) -> Path:
    return build_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def idefics_dir(tmp_path_factory) -> Path:
    return build_tiny_idefics3(tmp_path_factory.mktemp("idefics3"))


@pytest.fixture(scope="module")
def coca(tmp_path_factory) -> tuple[str, Path]:
    return build_tiny_coca(tmp_path_factory.mktemp("coca"))


def test_blip_encoder_decoder_loads_and_captions(blip_dir):
    cfg = CaptionSettings(caption_model=str(blip_dir), max_new_tokens=6)
    spec = resolve_model(cfg)
    assert spec.kind == "hf" and spec.path == str(blip_dir.resolve())
    assert spec.identity["prompt"] is None  # a captioner takes no prompt
    cap = load_captioner(spec, cfg)
    assert isinstance(cap, HFCaptioner) and not cap.is_chat
    assert (cap.device, cap.dtype, cap.target_size) == ("cpu", "float32", 32)
    out = cap.caption(IMAGES)
    # random weights give arbitrary words, but the same ones for the seed: any change in loading,
    # preprocessing or decoding shows here
    assert out == ["coat rustic cozy a mirror fresh", "cactus outfit red cozy necklace", "people skirt hands necklace autumn rustic"]
    assert cap.caption(IMAGES) == out  # greedy decoding is deterministic
    assert cap.caption([IMAGES[1]]) == [out[1]]  # batching does not change a caption


def test_fingerprint_tracks_model_and_generation_settings(blip_dir, tmp_path):
    base = resolve_model(CaptionSettings(caption_model=str(blip_dir)))
    assert resolve_model(CaptionSettings(caption_model=str(blip_dir))).fingerprint == base.fingerprint
    assert resolve_model(CaptionSettings(caption_model=str(blip_dir), max_new_tokens=7)).fingerprint != base.fingerprint
    assert resolve_model(CaptionSettings(caption_model=str(blip_dir), num_beams=2)).fingerprint != base.fingerprint
    with_min = resolve_model(CaptionSettings(caption_model=str(blip_dir), min_new_tokens=2))
    assert with_min.identity["min_new_tokens"] == 2 and with_min.fingerprint != base.fingerprint
    assert resolve_model(CaptionSettings(caption_model=str(blip_dir), min_new_tokens=3)).fingerprint != with_min.fingerprint
    # a prompt edit does not invalidate a captioner's cache (it does not read prompts)
    assert resolve_model(CaptionSettings(caption_model=str(blip_dir), prompt="Other.")).fingerprint == base.fingerprint
    # different weights (another seed) -> another fingerprint
    other = build_tiny_blip(tmp_path / "blip2", seed=1)
    assert resolve_model(CaptionSettings(caption_model=str(other))).fingerprint != base.fingerprint


def test_chat_vlm_idefics3_gets_prompt_through_chat_template(idefics_dir):
    cfg = CaptionSettings(caption_model=str(idefics_dir), max_new_tokens=5, prompt="Describe this image.")
    spec = resolve_model(cfg)
    assert spec.identity["prompt"] == "Describe this image."
    cap = load_captioner(spec, cfg)
    assert cap.is_chat and cap.model_type == "idefics3"
    assert cap._chat_text.startswith("<s>User:<image> Describe this image.") and cap._chat_text.endswith("Assistant:")
    assert cap.tokenizer.padding_side == "left"
    out = cap.caption(IMAGES)
    # the prompt is cut off: no caption repeats the prompt or the chat roles; the words are the seed's
    assert out == ["yellow golden room car fern", "by winter puppy two girl", "by winter simple train on"]
    other = resolve_model(CaptionSettings(caption_model=str(idefics_dir), max_new_tokens=5, prompt="What is this?"))
    assert other.fingerprint != spec.fingerprint


def test_open_clip_coca_with_weights_file(coca):
    arch, weights = coca
    cfg = CaptionSettings(caption_model=f"open_clip:{arch}", caption_weights=str(weights), max_new_tokens=6, min_new_tokens=6)
    spec = resolve_model(cfg)
    assert spec.kind == "open_clip" and len(spec.identity["weights_sha256"]) == 64
    # every generation setting is in the open_clip fingerprint too
    for change in ({"min_new_tokens": 5}, {"max_new_tokens": 7}):
        other = CaptionSettings(caption_model=f"open_clip:{arch}", caption_weights=str(weights), **{"max_new_tokens": 6, "min_new_tokens": 6, **change})
        assert resolve_model(other).fingerprint != spec.fingerprint
    cap = load_captioner(spec, cfg)
    assert isinstance(cap, OpenClipCocaCaptioner) and cap.target_size == 32
    # the tiny random CoCa's logits are near-tied between punctuation tokens ("!" and "#"), so its exact
    # characters move with the thread count: six forced punctuation tokens each (min_new_tokens = 6)
    out = cap.caption(IMAGES)
    assert [len(t) for t in out] == [6, 6, 6] and not any(ch.isalnum() for t in out for ch in t), out
    with pytest.raises(ModelError, match="caption-weights"):
        resolve_model(CaptionSettings(caption_model=f"open_clip:{arch}"))
    with pytest.raises(ModelError, match="not found"):
        resolve_model(CaptionSettings(caption_model=f"open_clip:{arch}", caption_weights="/nonexistent.safetensors"))
    with pytest.raises(ModelError, match="no architecture"):
        load_captioner(resolve_model(CaptionSettings(caption_model="open_clip:nope-arch", caption_weights=str(weights))), cfg)
    with pytest.raises(ModelError, match="cannot be loaded"):
        bad = weights.parent / "bad.safetensors"
        bad.write_bytes(b"garbage")
        load_captioner(resolve_model(CaptionSettings(caption_model=f"open_clip:{arch}", caption_weights=str(bad))), cfg)


def test_demo_model_resolves_from_any_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert demo_model_path() == ROOT / "fixtures" / "models" / "demo-captioner"
    cfg = CaptionSettings(caption_model="demo", max_new_tokens=8)
    spec = resolve_model(cfg)
    assert spec.identity["model"] == "demo"
    words = load_captioner(spec, cfg).caption(IMAGES[:1])[0].split()
    assert words == ["coat", "rustic", "cozy", "a", "mirror", "fresh", "craft", "train"]  # demo forbids repeats


def test_bad_models_and_settings(tmp_path, blip_dir):
    with pytest.raises(ModelError, match="not a hub id|cannot be had"):
        resolve_model(CaptionSettings(caption_model=str(tmp_path / "missing" / "deep" / "x")))
    with pytest.raises(ModelError, match="cannot be had"):
        resolve_model(CaptionSettings(caption_model="someone/not-a-model"))  # HF_HUB_OFFLINE=1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="config.json"):
        resolve_model(CaptionSettings(caption_model=str(empty)))
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="safetensors"):
        resolve_model(CaptionSettings(caption_model=str(empty)))
    (empty / "model.safetensors").write_bytes(b"x")
    with pytest.raises(ModelError, match="config cannot be read|cannot be loaded"):
        load_captioner(resolve_model(CaptionSettings(caption_model=str(empty))), CaptionSettings(caption_model=str(empty)))
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(CaptionSettings(caption_model=str(f)))
    with pytest.raises(ConfigError, match="max_new_tokens"):
        resolve_model(CaptionSettings(caption_model=str(blip_dir), max_new_tokens=0))
    with pytest.raises(ConfigError, match="min_new_tokens"):
        resolve_model(CaptionSettings(caption_model=str(blip_dir), max_new_tokens=3, min_new_tokens=5))
    with pytest.raises(ConfigError, match="batch_size"):
        resolve_model(CaptionSettings(caption_model=str(blip_dir), batch_size=0))


def test_device_and_dtype_resolution():
    import torch

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ConfigError, match="device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:0")
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("bf16", "cpu") == "bfloat16"
    with pytest.raises(ConfigError, match="dtype"):
        resolve_dtype("int8", "cpu")


def test_cpu_threads_policy():
    import torch

    from pinfeatures.caption.backends import set_cpu_threads

    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(CaptionSettings(cpu_threads=1)) == 1 and torch.get_num_threads() == 1
        auto = set_cpu_threads(CaptionSettings(loader_workers=2))
        assert auto == max(1, (os.cpu_count() or 1) - 2)
        with pytest.raises(ConfigError, match="cpu_threads"):
            set_cpu_threads(CaptionSettings(cpu_threads=-1))
    finally:
        torch.set_num_threads(before)


def test_forced_bfloat16_on_cpu_still_captions(blip_dir):
    cfg = CaptionSettings(caption_model=str(blip_dir), max_new_tokens=4, dtype="bfloat16")
    cap = load_captioner(resolve_model(cfg), cfg)
    assert cap.dtype == "bfloat16"
    assert next(cap.model.parameters()).dtype.is_floating_point
    assert len(cap.caption(IMAGES[:2])) == 2
