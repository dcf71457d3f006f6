"""Caption model backends: Hugging Face image-to-text / image-text-to-text models and open_clip CoCa.

What goes in: a CaptionSettings (`model`, `weights`, `revision`, `prompt`, generation settings,
`device`, `dtype`, `trust_remote_code`). What comes out:

- `resolve_model(cfg, file_hash)` -> ModelSpec: where the model lives and its *fingerprint*,
  computed WITHOUT loading the model (so a rebuild whose images are all cached never pays
  for loading it). The fingerprint hashes the model identity (hub id + revision commit, or
  the sha256 of the local weights/config/tokenizer files), the prompt and the generation
  settings; the caption cache is keyed by it.
- `load_captioner(spec, cfg)` -> a Captioner: `caption(images: list[PIL RGB]) -> list[str]`,
  one raw caption per image, batched, under `torch.inference_mode`.

Backends, chosen from the model:

- `hf` (a local folder, or a hub id): `AutoModelForImageTextToText` + `AutoProcessor`, which
  covers captioners (BLIP, GIT, VisionEncoderDecoder, Pix2Struct, ...) and chat VLMs
  (Idefics3/SmolVLM, Qwen2-VL/Qwen2.5-VL, LLaVA, PaliGemma ...). A model whose processor has a
  chat template is an instruction model: it gets `cfg.prompt` through that template. Weights load
  as safetensors only; `trust_remote_code` only when the config says so.
- `open_clip` (`open_clip:ARCH` + `weights` file, safetensors preferred): CoCa, decoded greedily
  here (open_clip's own `generate` needs transformers' BeamSearchScorer, gone in transformers 5).
- `demo`: the tiny random-weight BLIP under fixtures/models/demo-captioner (meaningless captions).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pinfeatures.buildfolder import file_sha256
from pinfeatures.caption.settings import DEMO_MODEL, OPEN_CLIP_PREFIX
from pinfeatures.errors import ConfigError, ModelError


# Files whose bytes define a HF model folder's behaviour (weights are hashed too, see below).
_HF_META_FILES = (
    "config.json", "generation_config.json", "preprocessor_config.json", "processor_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "tokenizer.model", "spiece.model", "chat_template.json", "chat_template.jinja",
    "added_tokens.json", "video_preprocessor_config.json",
)
# Models that caption from a task token rather than a chat template.
_TASK_PROMPTS = {"florence2": "<MORE_DETAILED_CAPTION>"}


def demo_model_path() -> Path:
    """The bundled demo model: fixtures/models/demo-captioner next to the package (a checkout),
    wherever the command is run from."""
    package = Path(__file__).resolve().parent.parent  # pinfeatures/
    for base in (package.parent, package):
        p = base / "fixtures" / "models" / "demo-captioner"
        if (p / "config.json").is_file():
            return p
    raise ModelError(
        "caption model 'demo': fixtures/models/demo-captioner not found next to the package "
        "(run from a checkout, or build it with `python fixtures/make_demo_model.py`)"
    )


# -- device and dtype ------------------------------------------------------------------


def resolve_device(device: str) -> str:
    """`auto` -> `cuda` when a GPU is visible, else `cpu`; anything else is checked and kept."""
    import torch

    d = (device or "auto").strip().lower()
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if d.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"caption.device {device!r}: CUDA is not available on this machine")
        return d
    if d in ("cpu", "mps"):
        return d
    raise ConfigError(f"caption.device must be auto, cpu, cuda or cuda:N, got {device!r}")


def resolve_dtype(dtype: str, device: str) -> str:
    """`auto` -> bfloat16 on a CUDA device that supports it, float16 on older CUDA, float32 on CPU."""
    import torch

    d = (dtype or "auto").strip().lower()
    if d == "auto":
        if device.startswith("cuda"):
            return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        return "float32"
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    d = aliases.get(d, d)
    if d not in ("float32", "bfloat16", "float16"):
        raise ConfigError(f"caption.dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return d


# -- model spec + fingerprint --------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """Where a caption model lives, and its fingerprint (cache key half)."""

    kind: str
    """`hf` or `open_clip`."""
    name: str
    """As the user gave it (`demo`, a folder, a hub id, `open_clip:ARCH`)."""
    path: str
    """The local folder (hf) or the weights file (open_clip)."""
    fingerprint: str
    identity: dict[str, Any] = field(default_factory=dict)
    """What the fingerprint hashes (model identity + prompt + generation settings)."""


def generation_settings(cfg) -> dict[str, Any]:
    return {"max_new_tokens": cfg.max_new_tokens, "num_beams": cfg.num_beams, "min_new_tokens": cfg.min_new_tokens}


def _fingerprint(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def resolve_model(cfg, file_hash: Callable[[Path], str] = file_sha256) -> ModelSpec:
    """Locate the model named by `cfg.caption_model` and compute its fingerprint, without loading it.

    `file_hash(path) -> sha256` hashes weights files (the caption cache memoises it).
    Raises ModelError when the model cannot be found.
    """
    if not cfg.caption_model:
        raise ConfigError("caption.caption_model is not set")
    name = cfg.caption_model.strip()
    gen = generation_settings(cfg)
    if name.startswith(OPEN_CLIP_PREFIX):
        arch = name[len(OPEN_CLIP_PREFIX):].strip()
        if not arch:
            raise ModelError("caption model 'open_clip:' needs an architecture name, e.g. open_clip:coca_ViT-B-32")
        if not cfg.caption_weights:
            raise ModelError(f"caption model {name!r} needs --caption-weights FILE (safetensors preferred)")
        wp = Path(cfg.caption_weights).expanduser()
        if not wp.is_file():
            raise ModelError(f"caption weights file not found: {cfg.caption_weights}")
        identity = {"backend": "open_clip", "arch": arch, "weights_sha256": file_hash(wp), **gen}
        # CoCa takes no prompt, so the prompt is not part of its fingerprint
        return ModelSpec("open_clip", name, str(wp.resolve()), _fingerprint(identity), identity)

    if name == DEMO_MODEL:
        folder = demo_model_path()
    elif Path(name).expanduser().is_dir():
        folder = Path(name).expanduser().resolve()
    elif Path(name).expanduser().exists():
        raise ModelError(f"caption model {name!r} is a file; give the model's folder (or open_clip:ARCH with --caption-weights)")
    else:
        folder = None
    if folder is not None:
        if not (folder / "config.json").is_file():
            raise ModelError(f"caption model folder {folder} has no config.json (not a transformers model folder)")
        weights = sorted(folder.glob("*.safetensors"))
        if not weights:
            raise ModelError(
                f"caption model folder {folder} has no *.safetensors weights (only safetensors are loaded; "
                "convert .bin weights with `save_pretrained(..., safe_serialization=True)`)"
            )
        files = {p.name: file_hash(p) for p in weights}
        files.update({n: file_sha256(folder / n) for n in _HF_META_FILES if (folder / n).is_file()})
        identity = {"backend": "hf", "model": DEMO_MODEL if name == DEMO_MODEL else str(folder), "files": files}
    else:
        folder, commit = _hub_snapshot(name, cfg.revision)
        identity = {"backend": "hf", "model": name, "revision": commit}
    identity.update(gen)
    # Only instruction models read the prompt; a captioner's cache entries survive a prompt edit.
    identity["prompt"] = cfg.prompt if _uses_prompt(Path(folder)) else None
    return ModelSpec("hf", name, str(folder), _fingerprint(identity), identity)


def _uses_prompt(folder: Path) -> bool:
    """True when the model folder ships a chat template (an instruction model), read from its files."""
    if (folder / "chat_template.json").is_file() or (folder / "chat_template.jinja").is_file():
        return True
    for name in ("processor_config.json", "tokenizer_config.json"):
        f = folder / name
        if f.is_file():
            try:
                if json.loads(f.read_text(encoding="utf-8")).get("chat_template"):
                    return True
            except (OSError, ValueError, AttributeError):
                continue
    return False


def _hub_snapshot(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """Local snapshot folder and commit of a hub model (downloaded once by huggingface_hub)."""
    if repo_id.count("/") > 1 or repo_id.startswith((".", "/", "~")):
        raise ModelError(f"caption model {repo_id!r}: no such folder, and not a hub id (owner/name)")
    try:
        from huggingface_hub import snapshot_download

        path = Path(
            snapshot_download(
                repo_id, revision=revision,
                allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.py", "*.tiktoken"],
            )
        )
    except Exception as exc:  # noqa: BLE001 - offline, unknown repo, gated, bad revision ...
        raise ModelError(
            f"caption model {repo_id!r}: not a local folder, and the hub snapshot cannot be had "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    return path, path.name  # snapshots/<commit>


# -- captioners --------------------------------------------------------------------------


class Captioner(Protocol):
    name: str
    device: str
    dtype: str
    target_size: int | None
    """Shortest side the model needs (JPEG draft decoding goes no smaller); None: full size."""

    def caption(self, images: Sequence[Any]) -> list[str]: ...


def load_captioner(spec: ModelSpec, cfg, *, device: str | None = None, dtype: str | None = None) -> Captioner:
    dev = device or resolve_device(cfg.device)
    dt = dtype or resolve_dtype(cfg.dtype, dev)
    if dev == "cpu":
        set_cpu_threads(cfg)
    if spec.kind == "open_clip":
        return OpenClipCocaCaptioner(spec, cfg, dev, dt)
    return HFCaptioner(spec, cfg, dev, dt)


def set_cpu_threads(cfg) -> int:
    """Size torch's CPU thread pool for captioning (see CaptionSettings.cpu_threads); returns the count.

    Measured on a busy 2-core machine: a batch of 16 through the demo model took 3.9 s with 2
    torch threads and 0.08 s with 1, because each op's thread barrier waited on a core that the
    loader (or anything else) held.
    """
    import torch

    n = cfg.cpu_threads
    if n == 0:
        n = max(1, (os.cpu_count() or 1) - max(0, cfg.loader_workers))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class HFCaptioner:
    """A transformers image-to-text / image-text-to-text model and its processor."""

    def __init__(self, spec: ModelSpec, cfg, device: str, dtype: str):
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForImageTextToText

        transformers.logging.set_verbosity_error()  # load reports and deprecation chatter
        transformers.utils.logging.disable_progress_bar()
        self.name, self.device, self.dtype = spec.name, device, dtype
        path = spec.path
        common = {"local_files_only": True, "trust_remote_code": bool(cfg.trust_remote_code)}
        try:
            config = AutoConfig.from_pretrained(path, **common)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"caption model {spec.name!r}: config cannot be read: {exc}") from None
        self.model_type = getattr(config, "model_type", "?")
        kwargs = dict(common, dtype=_torch_dtype(dtype), use_safetensors=True)
        try:
            try:
                model = AutoModelForImageTextToText.from_pretrained(path, attn_implementation="sdpa", **kwargs)
            except (ValueError, ImportError) as exc:
                if "sdpa" not in str(exc).lower() and "attn" not in str(exc).lower():
                    raise
                model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)  # no SDPA for this one
        except Exception as exc:  # noqa: BLE001
            raise ModelError(
                f"caption model {spec.name!r} (model_type {self.model_type!r}) cannot be loaded as an "
                f"image-to-text model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        self.model = model.to(device).eval()
        self.processor, self.tokenizer, self.image_processor = self._load_processor(path, common, spec.name)
        self.chat_template = getattr(self.processor, "chat_template", None) if self.processor is not None else None
        self.task_prompt = _TASK_PROMPTS.get(self.model_type)
        self.is_chat = bool(self.chat_template) and self.task_prompt is None
        self.decoder_only = not bool(getattr(config, "is_encoder_decoder", False))
        if self.is_chat and self.tokenizer is not None:
            # decoder-only generation appends to the right, so prompts pad on the left
            self.tokenizer.padding_side = "left"
        self.prompt = cfg.prompt
        self.target_size = _target_size(self.image_processor)
        gen = copy.deepcopy(self.model.generation_config)
        gen.max_new_tokens = cfg.max_new_tokens
        gen.max_length = None
        gen.num_beams = cfg.num_beams
        gen.do_sample = False
        gen.temperature = gen.top_p = gen.top_k = None
        if cfg.min_new_tokens is not None:
            gen.min_new_tokens = cfg.min_new_tokens
        if gen.pad_token_id is None and self.tokenizer is not None:
            gen.pad_token_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        self.generation_config = gen
        self._torch = torch
        if self.is_chat:
            self._chat_text = self._render_prompt()

    @staticmethod
    def _load_processor(path: str, common: dict, name: str):
        from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

        proc = None
        try:
            proc = AutoProcessor.from_pretrained(path, **common)
        except Exception:  # noqa: BLE001 - e.g. VisionEncoderDecoder folders with separate parts
            proc = None
        image_processor = getattr(proc, "image_processor", None)
        tokenizer = getattr(proc, "tokenizer", None)
        if image_processor is None or tokenizer is None:
            try:
                image_processor = image_processor or AutoImageProcessor.from_pretrained(path, **common)
                tokenizer = tokenizer or AutoTokenizer.from_pretrained(path, **common)
            except Exception as exc:  # noqa: BLE001
                raise ModelError(f"caption model {name!r}: no usable processor/tokenizer in the folder: {exc}") from None
            if proc is not None and not hasattr(proc, "image_processor"):
                proc = None  # AutoProcessor gave just a tokenizer or an image processor
        return proc, tokenizer, image_processor

    def _render_prompt(self) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
        try:
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"caption model {self.name!r}: chat template cannot render the prompt: {exc}") from None

    def _inputs(self, images: Sequence[Any]):
        n = len(images)
        if self.is_chat:
            return self.processor(
                text=[self._chat_text] * n, images=[[im] for im in images], padding=True, return_tensors="pt"
            )
        if self.task_prompt is not None:
            return self.processor(text=[self.task_prompt] * n, images=list(images), padding=True, return_tensors="pt")
        if self.processor is not None:
            return self.processor(images=list(images), return_tensors="pt")
        return self.image_processor(images=list(images), return_tensors="pt")

    def caption(self, images: Sequence[Any]) -> list[str]:
        """One raw caption per image (batched generate, greedy or beam per config)."""
        torch = self._torch
        if not images:
            return []
        inputs = self._inputs(images)
        batch = {}
        for k, v in inputs.items():
            if hasattr(v, "to"):
                v = v.to(self.device)
                if torch.is_floating_point(v):
                    v = v.to(_torch_dtype(self.dtype))
            batch[k] = v
        with torch.inference_mode():
            out = self.model.generate(**batch, generation_config=self.generation_config)
        if hasattr(out, "sequences"):
            out = out.sequences
        prompt_ids = batch.get("input_ids")
        # decoder-only models return prompt + continuation; keep the continuation
        if (
            self.decoder_only and prompt_ids is not None and (self.is_chat or self.task_prompt)
            and out.shape[1] >= prompt_ids.shape[1] and torch.equal(out[:, : prompt_ids.shape[1]], prompt_ids)
        ):
            out = out[:, prompt_ids.shape[1]:]
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
        return [t.strip() for t in texts]


def _target_size(image_processor) -> int | None:
    size = getattr(image_processor, "size", None)
    if size is None:
        return None
    if isinstance(size, int):
        return size
    get = size.get if isinstance(size, dict) else (lambda k, d=None: getattr(size, k, d))
    for key in ("shortest_edge", "height"):
        v = get(key, None)
        if isinstance(v, int) and v > 0:
            if key == "height" and isinstance(get("width", None), int):
                return min(v, get("width"))
            return v
    v = get("longest_edge", None)
    return v if isinstance(v, int) and v > 0 else None


class OpenClipCocaCaptioner:
    """open_clip CoCa with greedy decoding (batch-wise, stops when every row has ended)."""

    def __init__(self, spec: ModelSpec, cfg, device: str, dtype: str):
        import open_clip
        import torch

        arch = spec.name[len(OPEN_CLIP_PREFIX):].strip()
        self.name, self.device, self.dtype = spec.name, device, dtype
        if cfg.num_beams != 1:
            raise ConfigError("caption.num_beams: the open_clip CoCa backend decodes greedily; set num_beams = 1")
        if arch not in open_clip.list_models():
            raise ModelError(f"caption model {spec.name!r}: open_clip has no architecture {arch!r}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=spec.path, device=device)
        except Exception as exc:  # noqa: BLE001 - size mismatches, bad files
            raise ModelError(f"caption model {spec.name!r}: weights {spec.path!r} cannot be loaded: {exc}") from None
        if not hasattr(model, "text_decoder"):
            raise ModelError(f"caption model {spec.name!r} is not a CoCa model (open_clip captioning needs CoCa)")
        self.model = model.to(_torch_dtype(dtype)).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.sot = getattr(self.tokenizer, "sot_token_id", 49406)
        self.eot = getattr(self.tokenizer, "eot_token_id", 49407)
        self.max_new_tokens = cfg.max_new_tokens
        self.min_new_tokens = cfg.min_new_tokens or 0
        ctx = getattr(model, "context_length", None) or 76
        self.max_new_tokens = min(self.max_new_tokens, ctx - 1)
        size = getattr(model.visual, "image_size", 224)
        self.target_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self._torch = torch

    def caption(self, images: Sequence[Any]) -> list[str]:
        torch = self._torch
        if not images:
            return []
        with torch.inference_mode():
            pix = torch.stack([self.preprocess(im) for im in images]).to(self.device, _torch_dtype(self.dtype))
            image_latent, image_embs = self.model._encode_image(pix)
            out = torch.full((len(images), 1), self.sot, dtype=torch.long, device=self.device)
            done = torch.zeros(len(images), dtype=torch.bool, device=self.device)
            for step in range(self.max_new_tokens):
                logits = self.model(pix, out, image_latent=image_latent, image_embs=image_embs, output_labels=False)["logits"][:, -1]
                if step < self.min_new_tokens:
                    logits[:, self.eot] = float("-inf")
                nxt = logits.argmax(-1)
                nxt = torch.where(done, torch.full_like(nxt, self.eot), nxt)
                out = torch.cat([out, nxt[:, None]], dim=1)
                done |= nxt == self.eot
                if bool(done.all()) and step + 1 >= self.min_new_tokens:
                    break
        texts = []
        for row in out[:, 1:].tolist():
            if self.eot in row:
                row = row[: row.index(self.eot)]
            texts.append(self.tokenizer.decode(row).strip() if hasattr(self.tokenizer, "decode") else _clip_decode(row))
        return texts


def _clip_decode(ids: list[int]) -> str:
    import open_clip

    return open_clip.decode(__import__("torch").tensor(ids)).strip()


def model_summary(spec: ModelSpec) -> dict[str, Any]:
    """The model part of the manifest: name, backend, path and fingerprint."""
    return {"name": spec.name, "backend": spec.kind, "path": spec.path, "fingerprint": spec.fingerprint}


__all__ = [
    "Captioner", "ModelSpec", "demo_model_path", "generation_settings", "load_captioner", "model_summary",
    "resolve_device", "resolve_dtype", "resolve_model",
]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the loader's threads + the tokenizers pool deadlock warnings
logging.getLogger("open_clip").setLevel(logging.WARNING)
