"""Caption quality: the degenerate-caption filter and the optional CLIP-score check.

`clean_caption(text) -> (caption | None, status)`: strips boilerplate openings
("an image of", "a picture of", "this image shows", "arafed" ...) and whitespace, and
says `degenerate` for what is not a usable caption (empty, one word repeated, a short
phrase looping, almost no distinct words, no letters at all). A caption that passes comes
back cleaned with status `ok`.

`ClipChecker`: an open_clip model that scores how well a caption matches its image
(cosine similarity of the image and text embeddings, roughly 0.1-0.4 for real CLIP
models; a mismatched caption scores lower). The caption stage flags captions under
`clip_min_score`, and drops them (status `low_clip_score`) when `drop_flagged` is set.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import regex

from pinfeatures.errors import ModelError

# Openings that say nothing about the content: models trained on alt text love them.
# Applied repeatedly ("a photo of an image of ...") and case-insensitively.
_BOILERPLATE = regex.compile(
    r"^\s*(?:"
    r"arafed|araffe|arafly|"
    r"(?:there\s+is|there\s+are|this\s+is|here\s+is|it\s+is)\s+|"
    r"(?:this|the)\s+(?:image|picture|photo|photograph)\s+(?:shows|depicts|features|contains|is\s+of)\s*|"
    r"(?:an?|the)\s+(?:close[\s-]?up\s+)?(?:image|picture|photo|photograph|pic|illustration|stock\s+photo)\s+(?:of|showing|with)\s+|"
    r"(?:image|picture|photo|photograph)\s+of\s+|"
    r"(?:in\s+)?(?:this|the)\s+(?:image|picture|photo)\s*,?\s*"
    r")",
    regex.IGNORECASE,
)
_ONLY_BOILERPLATE = regex.compile(
    r"^\s*(?:(?:an?|the|this)\s+)?(?:close[\s-]?up\s+)?(?:image|picture|photo|photograph|pic|illustration|stock\s+photo)"
    r"(?:\s+(?:of|showing|with))?\s*[.!]*\s*$",
    regex.IGNORECASE,
)
_WORD = regex.compile(r"[\p{L}\p{N}]+(?:['’][\p{L}]+)?")
_SPACE = regex.compile(r"\s+")


def strip_boilerplate(text: str) -> str:
    """Remove boilerplate openings (repeatedly) and tidy whitespace and the first letter's case."""
    s = _SPACE.sub(" ", text).strip()
    for _ in range(4):
        new = _BOILERPLATE.sub("", s, count=1).strip(" ,:;-")
        if new == s:
            break
        s = new
    if s and s[0].islower() and s != text.strip():
        s = s[0].upper() + s[1:]
    return s


def degenerate_reason(text: str) -> str | None:
    """Why `text` is not a usable caption, or None if it is.

    Rules (on lowercased word tokens):
    - empty / no letters, or nothing but boilerplate ("a photo of");
    - one token repeated 4+ times in a row ("dog dog dog dog");
    - a 2-4 word phrase repeated 3+ times in a row ("on the table on the table on the table");
    - 6+ tokens of which fewer than 40% are distinct.
    """
    words = [w.lower() for w in _WORD.findall(text)]
    if not words or not any(ch.isalpha() for ch in text):
        return "empty"
    if _ONLY_BOILERPLATE.match(text):
        return "boilerplate only"
    run = 1
    for a, b in itertools.pairwise(words):
        run = run + 1 if a == b else 1
        if run >= 4:
            return f"token {a!r} repeated"
    for n in (2, 3, 4):
        for i in range(len(words) - 3 * n + 1):
            gram = words[i : i + n]
            if words[i + n : i + 2 * n] == gram and words[i + 2 * n : i + 3 * n] == gram:
                return f"phrase {' '.join(gram)!r} repeated"
    if len(words) >= 6 and len(set(words)) / len(words) < 0.4:
        return "too few distinct words"
    return None


def clean_caption(text: str | None) -> tuple[str | None, str]:
    """(cleaned caption, 'ok') or (None, 'degenerate'). None in -> (None, 'degenerate')."""
    if text is None:
        return None, "degenerate"
    s = strip_boilerplate(str(text))
    if degenerate_reason(s) is not None:
        return None, "degenerate"
    return s, "ok"


class ClipChecker:
    """Cosine similarity of an image and a caption under an open_clip model.

    `arch`: an open_clip model name (e.g. `ViT-B-32`); `weights`: a local weights file
    (safetensors preferred, or a .pt/.bin the user gives). No hub downloads.
    """

    def __init__(self, arch: str, weights: str | None, *, device: str = "cpu"):
        import open_clip
        import torch

        if weights is None:
            raise ModelError(f"clip_check_model {arch!r} needs clip_check_weights (a local weights file)")
        if not Path(weights).is_file():
            raise ModelError(f"clip_check_weights: no such file {weights!r}")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=weights, device=device)
            self.tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError/ValueError/KeyError
            raise ModelError(f"clip_check_model {arch!r} with weights {weights!r} cannot be loaded: {exc}") from None
        self.model = model.eval()
        self.preprocess = preprocess
        self.device = device
        self.torch = torch
        h = hashlib.sha256(json.dumps({"arch": arch}).encode())
        with open(weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        self.fingerprint = h.hexdigest()[:16]

    def scores(self, images: Sequence, captions: Sequence[str]) -> list[float]:
        """One cosine similarity per (image, caption) pair."""
        torch = self.torch
        if not images:
            return []
        with torch.inference_mode():
            pix = torch.stack([self.preprocess(im) for im in images]).to(self.device)
            tok = self.tokenizer(list(captions)).to(self.device)
            img = self.model.encode_image(pix)
            txt = self.model.encode_text(tok)
            img = img / img.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            txt = txt / txt.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            return (img * txt).sum(-1).float().cpu().tolist()
