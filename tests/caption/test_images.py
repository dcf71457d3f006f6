"""pinfeatures.caption.images: local reads, HTTP fetches, hashing and decoding against hostile input.

Every image is generated here with Pillow into tmp_path; HTTP goes to a real server on
127.0.0.1 (tests/image_server.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import struct
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from image_server import ImageServer  # noqa: E402

import pinfeatures.caption.images as images_mod  # noqa: E402
from pinfeatures.caption.images import (  # noqa: E402
    STATUSES,
    address_problem,
    FetchedImage,
    ImageError,
    ImageSettings,
    decode_image,
    hash_images,
    is_url,
    read_images,
    read_local,
    resolve_local,
    sha256_hex,
)
from pinfeatures.caption.settings import CaptionSettings  # noqa: E402
from pinfeatures.errors import ConfigError  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def local(**kw) -> ImageSettings:
    """Settings for fetching from the test server on 127.0.0.1, which only the opt-in allows."""
    return ImageSettings(allow_private_addresses=True, **kw)


FAST = local(fetch_timeout_s=2.0, fetch_retries=2, fetch_backoff_s=0.01, fetch_deadline_s=5.0)


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch):
    # the fetcher honours http(s)_proxy like any client; the test server must be reached directly
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


# -- image builders ------------------------------------------------------------------------


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(color=RED, size=(8, 8)) -> bytes:
    return encode(Image.new("RGB", size, color), "PNG")


def noisy_jpeg(size=(256, 256)) -> bytes:
    rng = np.random.default_rng(0)
    return encode(Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)), "JPEG", quality=90)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring width x height, and one tiny IDAT: a bomb by declaration."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def close(px, want, tol=12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(px, want))


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def one(ref, root, settings=FAST) -> FetchedImage:
    (out,) = list(read_images([ref], root, settings, workers=2))
    return out


# -- decode_image --------------------------------------------------------------------------


def test_decode_plain_png_returns_loaded_rgb():
    im = decode_image(png(GREEN, (5, 3)), max_pixels=100)
    assert im.mode == "RGB" and im.size == (5, 3)
    assert im.getpixel((0, 0)) == GREEN


@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "zero bytes"),
        (b"this is a text file, not an image\n" * 10, "text named .jpg"),
        (b"\xff\xd8\xff", "JPEG magic and nothing else"),
        (png_header_only(10, 10)[:20], "PNG cut inside IHDR"),
    ],
)
def test_decode_not_an_image_is_unreadable(data, why):
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=40_000_000)
    assert ei.value.status == "unreadable", why


def test_decode_truncated_jpeg_is_unreadable():
    data = noisy_jpeg()
    with pytest.raises(ImageError) as ei:
        decode_image(data[: len(data) // 2], max_pixels=40_000_000)
    assert ei.value.status == "unreadable"
    assert "truncated" in ei.value.detail


def test_decode_truncated_png_is_unreadable():
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(ImageError) as ei:
        decode_image(data[: len(data) - 2000], max_pixels=40_000_000)
    assert ei.value.status == "unreadable"


def test_decode_bomb_declared_far_past_pillows_limit_is_too_large():
    before = Image.MAX_IMAGE_PIXELS
    data = png_header_only(100_000, 100_000)  # 10^10 pixels in a 100-byte file
    assert len(data) < 200
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=40_000_000)
    assert ei.value.status == "too_large"
    assert Image.MAX_IMAGE_PIXELS == before  # the global is never touched


def test_decode_bomb_between_pillow_warning_and_error_is_too_large():
    # 100M pixels: Pillow only warns (limit 89M, error at 2x); our max_pixels refuses it
    data = png_header_only(10_000, 10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError) as ei:
            decode_image(data, max_pixels=40_000_000)
    assert ei.value.status == "too_large"
    assert "10000x10000" in ei.value.detail


def test_decode_real_bomb_under_pillow_limit_uses_our_max_pixels():
    # a real 1-bit 7000x7000 image (49M pixels) compresses to a few KB; Pillow alone would decode it
    data = encode(Image.new("1", (7000, 7000), 0), "PNG")
    assert len(data) < 100_000
    with pytest.raises(ImageError) as ei:
        decode_image(data, max_pixels=40_000_000)
    assert ei.value.status == "too_large"
    # and max_pixels is the limit both ways: a raised limit lets the same image through
    small = encode(Image.new("1", (300, 200), 1), "PNG")
    with pytest.raises(ImageError):
        decode_image(small, max_pixels=300 * 200 - 1)
    assert decode_image(small, max_pixels=300 * 200).getpixel((0, 0)) == WHITE


def test_decode_limit_holds_when_other_code_disables_pillows_check(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageError) as ei:
        decode_image(png_header_only(100_000, 100_000), max_pixels=40_000_000)
    assert ei.value.status == "too_large"


def test_decode_cmyk_jpeg_to_rgb():
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red in CMYK
    im = decode_image(data, max_pixels=10_000)
    assert im.mode == "RGB"
    assert close(im.getpixel((16, 16)), RED, tol=20)


def test_decode_16bit_png_scales_instead_of_clipping():
    arr = np.zeros((4, 3), dtype=np.uint16)
    arr[:, 0], arr[:, 1], arr[:, 2] = 0, 32768, 65535
    src = Image.fromarray(arr)
    assert src.mode == "I;16"
    im = decode_image(encode(src, "PNG"), max_pixels=100)
    assert im.mode == "RGB"
    assert [im.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_decode_32bit_int_and_float_tiff():
    arr = np.array([[0, 1000, 70000]], dtype=np.int32)
    im = decode_image(encode(Image.fromarray(arr), "TIFF"), max_pixels=100)
    assert im.getpixel((0, 0)) == (0, 0, 0) and im.getpixel((2, 0)) == (255, 255, 255)
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    im = decode_image(encode(Image.fromarray(f), "TIFF"), max_pixels=100)
    assert im.mode == "RGB" and im.getpixel((2, 0)) == (1, 1, 1)


def test_decode_palette_png_with_transparency_composites_on_white():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)  # index 0 black, index 1 red
    im.putpixel((3, 3), 1)
    data = encode(im, "PNG", transparency=0)
    out = decode_image(data, max_pixels=100)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == WHITE  # transparent black -> white, not black
    assert out.getpixel((3, 3)) == RED


@pytest.mark.parametrize("mode, fill, want", [("RGBA", (255, 0, 0, 0), WHITE), ("RGBA", (255, 0, 0, 128), (255, 127, 127)), ("LA", (0, 0), WHITE), ("LA", (0, 255), (0, 0, 0))])
def test_decode_alpha_modes_composite_on_white(mode, fill, want):
    out = decode_image(encode(Image.new(mode, (3, 3), fill), "PNG"), max_pixels=100)
    assert out.mode == "RGB"
    assert close(out.getpixel((1, 1)), want, tol=1)


def test_decode_animated_gif_takes_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in (RED, GREEN, BLUE)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.n_frames == 3
    out = decode_image(buf.getvalue(), max_pixels=1000)
    assert out.mode == "RGB"
    assert out.getpixel((5, 5)) == RED


def test_decode_animated_webp_takes_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in (BLUE, RED)]
    data = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert decode_image(data, max_pixels=1000).getpixel((5, 5)) == BLUE


def test_decode_applies_exif_orientation():
    src = Image.new("RGB", (40, 20), BLUE)
    src.paste(RED, (0, 0, 20, 10))  # top-left quadrant red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display"
    data = encode(src, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data, max_pixels=10_000)
    assert out.size == (20, 40)  # width and height swapped
    assert close(out.getpixel((17, 2)), RED)  # the top-left corner is now top-right
    assert close(out.getpixel((2, 2)), BLUE)
    assert close(out.getpixel((17, 37)), BLUE)


def test_decode_jpeg_draft_mode_reduces_size_but_not_below_target():
    data = encode(Image.new("RGB", (2000, 1500), GREEN), "JPEG")
    full = decode_image(data, max_pixels=40_000_000)
    assert full.size == (2000, 1500)
    small = decode_image(data, max_pixels=40_000_000, target_size=224)
    assert small.size == (500, 375)  # 1/4 scale: 1/8 would make the short side 188 < 224
    assert min(small.size) >= 224
    assert close(small.getpixel((10, 10)), GREEN)
    # a target bigger than the image decodes at full size; non-JPEG formats ignore the target
    assert decode_image(data, max_pixels=40_000_000, target_size=4000).size == (2000, 1500)
    assert decode_image(png(RED, (600, 400)), max_pixels=10**6, target_size=100).size == (600, 400)


def test_decode_refuses_formats_outside_the_allowlist():
    ppm = encode(Image.new("RGB", (4, 4), RED), "PPM")
    with pytest.raises(ImageError) as ei:
        decode_image(ppm, max_pixels=100)
    assert ei.value.status == "unreadable"
    assert decode_image(ppm, max_pixels=100, formats=("PPM",)).getpixel((0, 0)) == RED


def test_decode_bad_arguments():
    with pytest.raises(ImageError):
        decode_image("not bytes", max_pixels=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        decode_image(png(), max_pixels=100, target_size=0)


def test_decoded_image_outlives_its_bytes():
    out = decode_image(bytearray(png(BLUE)), max_pixels=100)
    assert out.resize((2, 2)).getpixel((0, 0)) == BLUE


# -- resolve_local / local reads ------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "images"
    write(r / "a.png", png(RED))
    write(r / "sub" / "b.png", png(GREEN))
    write(tmp_path / "secret.png", png(BLUE))  # outside the root, exists
    return r


def test_resolve_local_relative_and_absolute_inside(root: Path):
    assert resolve_local("a.png", root) == (root / "a.png").resolve()
    assert resolve_local("sub/../a.png", root) == (root / "a.png").resolve()
    assert resolve_local(str(root / "sub" / "b.png"), root) == (root / "sub" / "b.png").resolve()


@pytest.mark.parametrize("ref", ["../secret.png", "sub/../../secret.png", "../../../../../../etc/passwd", "../nonexistent.png"])
def test_resolve_local_dotdot_escape(root: Path, ref: str):
    with pytest.raises(ImageError) as ei:
        resolve_local(ref, root)
    assert ei.value.status == "outside_root"


def test_resolve_local_absolute_elsewhere(root: Path, tmp_path: Path):
    for ref in (str(tmp_path / "secret.png"), "/etc/passwd", "/"):
        with pytest.raises(ImageError) as ei:
            resolve_local(ref, root)
        assert ei.value.status == "outside_root", ref


def test_resolve_local_symlinks(root: Path, tmp_path: Path):
    (root / "out.png").symlink_to(tmp_path / "secret.png")
    (root / "outdir").symlink_to(tmp_path)
    (root / "in.png").symlink_to(root / "sub" / "b.png")
    for ref in ("out.png", "outdir/secret.png"):
        with pytest.raises(ImageError) as ei:
            resolve_local(ref, root)
        assert ei.value.status == "outside_root", ref
    assert resolve_local("in.png", root) == (root / "sub" / "b.png").resolve()
    (root / "loop").symlink_to(root / "loop")
    with pytest.raises(ImageError) as ei:
        resolve_local("loop", root)
    assert ei.value.status in ("missing", "unreadable")


def test_resolve_local_missing_dir_fifo_nul(root: Path, tmp_path: Path):
    cases = {"nope.png": "missing", "sub": "unreadable", ".": "unreadable", "a.png/x": "missing", "a\x00.png": "missing"}
    os.mkfifo(root / "pipe.png")
    cases["pipe.png"] = "unreadable"
    for ref, status in cases.items():
        with pytest.raises(ImageError) as ei:
            resolve_local(ref, root)
        assert ei.value.status == status, ref
    with pytest.raises(ImageError) as ei:
        resolve_local("a.png", tmp_path / "no-such-root")
    assert ei.value.status == "missing"


def test_read_local_statuses_and_hashes(root: Path, tmp_path: Path):
    write(root / "empty.jpg", b"")
    write(root / "text.jpg", b"hello, I am not a JPEG")
    with open(root / "huge.png", "wb") as fh:  # sparse: max_bytes + 1 without writing them
        fh.truncate(1001)
    (root / "out.png").symlink_to(tmp_path / "secret.png")
    refs = ["a.png", "sub/b.png", "empty.jpg", "text.jpg", "huge.png", "nope.png", "../secret.png",
            str(tmp_path / "secret.png"), "out.png", "sub", None, "", "   "]
    got = list(read_images(refs, root, ImageSettings(max_bytes=1000), workers=3))
    assert [g.status for g in got] == ["ok", "ok", "ok", "ok", "too_large", "missing", "outside_root",
                                       "outside_root", "outside_root", "unreadable", "missing", "missing", "missing"]
    assert [g.ref for g in got[:10]] == refs[:10]
    assert got[10].ref == ""  # None becomes "" in the str-typed field
    assert got[0].data == (root / "a.png").read_bytes()
    assert got[0].sha256 == hashlib.sha256(got[0].data).hexdigest()
    assert got[2].data == b"" and got[2].sha256 == hashlib.sha256(b"").hexdigest()
    for g in got:
        assert g.status in STATUSES
        if g.status != "ok":
            assert g.data is None and g.sha256 is None and g.detail
    # zero bytes and a text file read fine; decoding is what refuses them
    for g in (got[2], got[3]):
        with pytest.raises(ImageError) as ei:
            decode_image(g.data, max_pixels=100)
        assert ei.value.status == "unreadable"


def test_read_local_single_file(root: Path):
    assert read_local("a.png", root, 10_000) == (root / "a.png").read_bytes()
    for ref, max_bytes, status in (("../secret.png", 10_000, "outside_root"), ("a.png", 10, "too_large"), ("x.png", 10, "missing")):
        with pytest.raises(ImageError) as ei:
            read_local(ref, root, max_bytes)
        assert ei.value.status == status


def test_read_local_file_exactly_at_limit_is_ok(root: Path):
    write(root / "edge.bin", b"x" * 1000)
    assert one("edge.bin", root, ImageSettings(max_bytes=1000)).status == "ok"
    assert one("edge.bin", root, ImageSettings(max_bytes=999)).status == "too_large"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_read_local_permission_denied_is_unreadable(root: Path):
    p = write(root / "locked.png", png())
    p.chmod(0)
    try:
        got = one("locked.png", root)
        assert got.status == "unreadable" and "locked.png" in got.detail
    finally:
        p.chmod(0o644)


def test_read_without_images_root(root: Path):
    got = list(read_images(["a.png", str(root / "a.png"), None], None, FAST))
    assert [g.status for g in got] == ["missing", "missing", "missing"]
    assert got[0].detail == "no images root given"


def test_read_non_string_refs_never_raise(root: Path):
    got = list(read_images([123, float("nan"), b"a.png", ["a.png"]], root, FAST))  # type: ignore[list-item]
    assert [g.status for g in got] == ["missing"] * 4
    assert all(isinstance(g.ref, str) for g in got)


def test_bad_urls_never_touch_the_network(root: Path):
    refs = ["file:///etc/passwd", "FILE:///etc/passwd", "ftp://example.com/a.png", "data:image/png;base64,iVBORw0KGgo=",
            "javascript:alert(1)", "gopher://x/", "http:/no-host", "https://", "http://exa mple.com/a.png",
            "http://example.com:99999/a.png", "http://example.com/a\r\nX-Injected: 1"]
    got = list(read_images(refs, root, FAST))
    assert [g.status for g in got] == ["bad_url"] * len(refs), [(g.ref, g.detail) for g in got]
    assert is_url("https://x/y") and is_url("data:x") and not is_url("C:\\img.png") and not is_url("sub/a:b.png")


def test_settings_from_caption_config_and_validation():
    cfg = CaptionSettings(max_image_bytes=123, max_image_pixels=456, fetch_timeout_s=1.5, fetch_retries=0, fetch_concurrency=3)
    s = ImageSettings.from_caption_config(cfg)
    assert (s.max_bytes, s.max_pixels, s.fetch_timeout_s, s.fetch_retries, s.fetch_concurrency) == (123, 456, 1.5, 0, 3)
    assert ImageSettings.from_caption_config(CaptionSettings()) == ImageSettings()
    for bad in ({"max_bytes": 0}, {"max_pixels": -1}, {"fetch_timeout_s": 0}, {"fetch_retries": -1}, {"fetch_concurrency": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ImageSettings(**bad)
    with pytest.raises(ConfigError, match="caption.max_image_bytes must be between 1 and"):
        CaptionSettings(max_image_bytes=0)  # checked when the caption settings are made, before any image
    with pytest.raises(ValueError):
        read_images([], None, FAST, workers=0)
    with pytest.raises(ValueError):
        ImageError("ok", "not a failure")


def test_sha256_hex_matches_hashlib():
    for data in (b"", b"abc", png()):
        assert sha256_hex(data) == hashlib.sha256(data).hexdigest()


# -- HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def server():
    files = {"/a.png": png(RED), "/b.jpg": noisy_jpeg((32, 32))}
    with ImageServer(files, lifetime_s=60) as srv:
        yield srv


def test_fetch_ok_and_hash(server: ImageServer):
    got = one(server.url("/a.png"), None)
    assert got.status == "ok" and got.detail is None
    assert got.data == server.files["/a.png"]
    assert got.sha256 == hashlib.sha256(server.files["/a.png"]).hexdigest()
    assert decode_image(got.data, max_pixels=100).getpixel((0, 0)) == RED


def test_fetch_404_is_final_no_retry(server: ImageServer):
    got = one(server.url("/status/404"), None)
    assert got.status == "fetch_failed" and "404" in got.detail
    assert server.hits["/status/404"] == 1
    got = one(server.url("/status/403"), None)
    assert got.status == "fetch_failed" and "403" in got.detail and server.hits["/status/403"] == 1


def test_fetch_500_then_ok_retries(server: ImageServer):
    got = one(server.url("/flaky/1/a.png"), None)
    assert got.status == "ok" and got.sha256 == sha256_hex(server.files["/a.png"])
    assert server.hits["/flaky/1/a.png"] == 2


def test_fetch_5xx_and_429_give_up_after_retries(server: ImageServer):
    for code in (500, 503, 429):
        got = one(server.url(f"/status/{code}"), None)
        assert got.status == "fetch_failed" and str(code) in got.detail and "3 attempts" in got.detail
        assert server.hits[f"/status/{code}"] == 3  # 1 + fetch_retries
    no_retry = local(fetch_retries=0, fetch_backoff_s=0.01)
    assert one(server.url("/flaky/1/b.jpg"), None, no_retry).status == "fetch_failed"


def test_fetch_slow_response_times_out_quickly(server: ImageServer):
    s = local(fetch_timeout_s=0.3, fetch_retries=1, fetch_backoff_s=0.01)
    t0 = time.monotonic()
    got = one(server.url("/slow/5/a.png"), None, s)
    elapsed = time.monotonic() - t0
    assert got.status == "fetch_failed" and "timed out" in got.detail
    assert server.hits["/slow/5/a.png"] == 2
    assert elapsed < 2.5


def test_fetch_dripping_body_hits_the_deadline(server: ImageServer):
    s = local(fetch_timeout_s=2.0, fetch_deadline_s=0.5, fetch_retries=0)
    t0 = time.monotonic()
    got = one(server.url("/drip/0.05/a.png"), None, s)  # each byte within the socket timeout
    assert got.status == "fetch_failed" and "deadline" in got.detail
    assert time.monotonic() - t0 < 2.5


def test_fetch_oversized_with_content_length(server: ImageServer):
    got = one(server.url("/big/50000"), None, local(max_bytes=1000))
    assert got.status == "too_large" and "Content-Length 50000" in got.detail


def test_fetch_oversized_without_content_length_stops_streaming(server: ImageServer):
    t0 = time.monotonic()
    got = one(server.url("/big/200000000?cl=0"), None, local(max_bytes=100_000))  # 200 MB offered
    assert got.status == "too_large" and got.data is None
    assert time.monotonic() - t0 < 3
    ok = one(server.url("/big/1000?cl=0"), None, local(max_bytes=1000))
    assert ok.status == "ok" and ok.data == b"\0" * 1000


def test_fetch_truncated_body_is_fetch_failed(server: ImageServer):
    got = one(server.url("/badlength/b.jpg"), None)
    assert got.status == "fetch_failed" and "truncated" in got.detail
    assert server.hits["/badlength/b.jpg"] == 3  # a cut connection is transient: retried


def test_fetch_redirects(server: ImageServer):
    got = one(server.url("/redirect/2/a.png"), None)
    assert got.status == "ok" and got.sha256 == sha256_hex(server.files["/a.png"])
    assert got.ref == server.url("/redirect/2/a.png")
    too_many = one(server.url("/redirect/6/a.png"), None, local(max_redirects=5))
    assert too_many.status == "fetch_failed"
    loop = one(server.url("/redirect-loop"), None)
    assert loop.status == "fetch_failed"
    assert server.hits["/redirect-loop"] <= 6


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "data:text/plain,hi"])
def test_fetch_redirect_to_other_scheme_refused(server: ImageServer, target: str):
    import urllib.parse

    got = one(server.url("/redirect-to?url=" + urllib.parse.quote(target, safe="")), None)
    assert got.status == "fetch_failed" and got.data is None
    assert "not allowed" in got.detail


def test_fetch_connection_refused(server: ImageServer):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    got = one(f"http://127.0.0.1:{port}/a.png", None)
    assert got.status == "fetch_failed" and "connection" in got.detail


def test_read_images_mixed_refs_in_input_order(server: ImageServer, root: Path):
    refs = [server.url("/slow/0.4/a.png"), "a.png", None, server.url("/b.jpg"), "../secret.png",
            "file:///etc/passwd", server.url("/status/404"), "sub/b.png", ""]
    got = list(read_images(refs, root, FAST, workers=4))
    assert [g.status for g in got] == ["ok", "ok", "missing", "ok", "outside_root", "bad_url", "fetch_failed", "ok", "missing"]
    assert [g.ref for g in got] == [r if r is not None else "" for r in refs]
    assert got[0].sha256 == sha256_hex(server.files["/a.png"]) == got[1].sha256  # same bytes, same key
    assert got[3].sha256 == sha256_hex(server.files["/b.jpg"])
    assert got[7].sha256 == sha256_hex((root / "sub" / "b.png").read_bytes())


def test_hash_images_drops_data_keeps_hash(server: ImageServer, root: Path):
    refs = ["a.png", server.url("/b.jpg"), "nope.png"]
    full = list(read_images(refs, root, FAST))
    hashed = list(hash_images(refs, root, FAST))
    assert [h.sha256 for h in hashed] == [f.sha256 for f in full]
    assert [h.status for h in hashed] == ["ok", "ok", "missing"]
    assert all(h.data is None for h in hashed)


def test_read_images_bounded_in_flight(server: ImageServer, root: Path):
    pulled = 0

    def refs():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield server.url(f"/b.jpg?i={i}") if i % 2 else "a.png"

    workers = 4
    ahead = 0
    n = 0
    for n, got in enumerate(read_images(refs(), root, FAST, workers=workers), start=1):
        assert got.status == "ok"
        ahead = max(ahead, pulled - n)
    assert n == 1000
    assert ahead <= 2 * workers  # never more than max_in_flight refs held beyond the consumer
    assert server.max_concurrent <= workers
    assert server.hits["/b.jpg"] == 500


def test_read_images_fetch_concurrency_caps_http(server: ImageServer):
    s = local(fetch_concurrency=2, fetch_retries=0)
    refs = [server.url(f"/slow/0.1/a.png?i={i}") for i in range(12)]
    got = list(read_images(refs, None, s, workers=8))
    assert all(g.status == "ok" for g in got)
    assert server.max_concurrent <= 2


def test_read_images_abandoned_early_stops_work(server: ImageServer):
    refs = (server.url(f"/slow/0.05/a.png?i={i}") for i in range(10_000))
    gen = read_images(refs, None, FAST, workers=4, max_in_flight=4)
    first = [next(gen) for _ in range(3)]
    gen.close()
    assert all(g.status == "ok" for g in first)
    time.sleep(0.2)
    assert server.hits["/slow/0.05/a.png"] <= 3 + 4


# -- safe fetching: address checks, pinning, redirects, one deadline -------------------------

PUBLIC_IP = "93.184.216.34"  # stands in for a public host; tests route it to the local server


@pytest.mark.parametrize(
    "ip, kind",
    [
        ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
        ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.5", "private"), ("fc00::1", "private"),
        ("192.0.2.1", "private"), ("2001:db8::1", "private"),  # documentation ranges
        ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"), ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("::7f00:1", "reserved"),
        ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("100.64.0.1", "non-public"), ("fec0::1", "site-local"),
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"), ("64:ff9b::a9fe:a9fe", "link-local"),  # 6to4 and NAT64 of inner IPv4
        ("not an ip", "unparsable"),
        ("93.184.216.34", None), ("8.8.8.8", None), ("2606:4700::1111", None),
        ("::ffff:8.8.8.8", None), ("64:ff9b::808:808", None),  # public IPv4 inside IPv6
    ],
)
def test_address_problem(ip, kind):
    assert address_problem(ip) == kind


@pytest.mark.parametrize(
    "url, detail",
    [
        ("http://127.0.0.1:{port}/a.png", "127.0.0.1, a loopback address (--allow-private-addresses fetches it)"),
        ("http://[::1]:{port}/a.png", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]:{port}/a.png", "::ffff:127.0.0.1, a loopback address"),
        ("http://2130706433:{port}/a.png", "'2130706433' resolves to 127.0.0.1, a loopback address"),  # 127.0.0.1 as one number
        ("http://0x7f.1:{port}/a.png", "'0x7f.1' resolves to 127.0.0.1, a loopback address"),
        ("http://0.0.0.0:{port}/a.png", "0.0.0.0, an unspecified address"),
        ("http://localhost:{port}/a.png", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("http://[fe80::1]/x.png", "fe80::1, a link-local address"),
        ("https://224.0.0.1/x.png", "224.0.0.1, a multicast address"),
    ],
)
def test_private_addresses_blocked_by_default_without_connecting(server: ImageServer, monkeypatch, url, detail):
    opened = []
    monkeypatch.setattr(images_mod, "_open_socket", lambda ip, port, timeout: opened.append(ip))
    got = one(url.format(port=server.port), None, ImageSettings(fetch_retries=2, fetch_backoff_s=0.01))
    assert (got.status, got.data, got.sha256) == ("blocked_address", None, None)
    assert detail in got.detail
    assert opened == [] and sum(server.hits.values()) == 0  # no connection was made


def test_allow_private_addresses_opts_in(server: ImageServer):
    assert one(server.url("/a.png"), None, ImageSettings(fetch_retries=0)).status == "blocked_address"
    got = one(server.url("/a.png"), None, ImageSettings(fetch_retries=0, allow_private_addresses=True))
    assert got.status == "ok" and got.sha256 == sha256_hex(server.files["/a.png"])
    cfg = CaptionSettings(allow_private_addresses=True, fetch_deadline_s=7.5)
    settings = ImageSettings.from_caption_config(cfg)
    assert (settings.allow_private_addresses, settings.fetch_deadline_s) == (True, 7.5)
    assert one(server.url("/b.jpg"), None, settings).status == "ok"
    assert ImageSettings.from_caption_config(CaptionSettings()).allow_private_addresses is False


@pytest.fixture
def fake_dns(server: ImageServer, monkeypatch):
    """Names resolve through a table (a list of answers is served one per lookup, the last one repeating);
    PUBLIC_IP is routed to the local server, every other connect is recorded and refused."""
    answers: dict[str, list[list[str]]] = {}
    lookups: list[str] = []
    connects: list[str] = []

    real_resolve = images_mod.resolve_host

    def resolve(host, port):
        lookups.append(host)
        if host not in answers:  # an IP literal resolves to itself
            return real_resolve(host, port)
        queue = answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    def open_socket(ip, port, timeout):
        connects.append(ip)
        if ip == PUBLIC_IP:
            return socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        raise ConnectionRefusedError(111, "refused by the test")

    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *args, **kw):  # a second lookup of a name, behind the check's back, fails the test
        assert host not in answers, f"{host!r} looked up again, behind the check's back"
        return real_getaddrinfo(host, *args, **kw)

    monkeypatch.setattr(images_mod, "resolve_host", resolve)
    monkeypatch.setattr(images_mod, "_open_socket", open_socket)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, lookups, connects


def test_name_resolving_to_a_private_address_is_blocked(server: ImageServer, fake_dns):
    answers, lookups, connects = fake_dns
    answers["images.example"] = [["10.0.0.7"]]
    answers["mixed.example"] = [[PUBLIC_IP, "192.168.1.5"]]  # one private answer blocks the name
    answers["v6.example"] = [["::ffff:169.254.169.254"]]
    settings = ImageSettings(fetch_retries=2, fetch_backoff_s=0.01)
    got = one("http://images.example/a.png", None, settings)
    assert (got.status, got.detail) == ("blocked_address", "'images.example' resolves to 10.0.0.7, a private address (--allow-private-addresses fetches it)")
    got = one("http://mixed.example/a.png", None, settings)
    assert got.status == "blocked_address" and "192.168.1.5, a private address" in got.detail
    got = one("https://v6.example/a.png", None, settings)
    assert got.status == "blocked_address" and "a link-local address" in got.detail
    assert lookups == ["images.example", "mixed.example", "v6.example"]  # blocked is final: no retry
    assert connects == [] and sum(server.hits.values()) == 0


def test_a_hanging_name_lookup_fails_at_the_fetch_deadline(monkeypatch):
    release = threading.Event()
    lookups = []

    def hang(host, port):  # a resolver that never answers (until the test lets it go)
        lookups.append(host)
        release.wait(60)
        raise socket.gaierror(socket.EAI_AGAIN, "let go by the test")

    monkeypatch.setattr(images_mod, "resolve_host", hang)
    started = time.monotonic()
    try:
        got = one("http://hangs.example/a.png", None, ImageSettings(fetch_retries=3, fetch_backoff_s=0.01, fetch_deadline_s=0.5))
    finally:
        release.set()
    assert 0.5 <= time.monotonic() - started < 5  # the deadline, not the resolver, ended the wait
    assert (got.status, got.data, got.sha256) == ("fetch_failed", None, None)
    assert got.detail == "timed out: fetch_deadline_s 0.5 s passed while resolving 'hangs.example' (after 1 attempt)"
    assert lookups == ["hangs.example"]  # no retry starts after the deadline


def test_name_lookup_errors_still_reach_the_fetch(monkeypatch):
    def fail(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(images_mod, "resolve_host", fail)
    got = one("http://nowhere.example/a.png", None, ImageSettings(fetch_retries=2, fetch_backoff_s=0.01))
    assert (got.status, got.detail) == ("fetch_failed", "host 'nowhere.example' not found")


def test_connection_is_pinned_to_the_checked_address(server: ImageServer, fake_dns):
    """DNS rebinding: the name answers public first and loopback after; the fetch connects to the
    address it checked, looks the name up once, and still sends the name as the Host header."""
    answers, lookups, connects = fake_dns
    answers["cdn.example"] = [[PUBLIC_IP], ["127.0.0.1"]]
    got = one(f"http://cdn.example:{server.port}/a.png", None, ImageSettings(fetch_retries=0))
    assert got.status == "ok" and got.sha256 == sha256_hex(server.files["/a.png"])
    assert lookups == ["cdn.example"] and connects == [PUBLIC_IP]
    assert server.host_headers == [f"cdn.example:{server.port}"]


def test_every_redirect_hop_is_checked(server: ImageServer, fake_dns):
    import urllib.parse

    answers, _lookups, connects = fake_dns
    answers["cdn.example"] = [[PUBLIC_IP]]
    answers["internal.example"] = [["10.1.2.3"]]
    base = f"http://cdn.example:{server.port}"
    settings = ImageSettings(fetch_retries=1, fetch_backoff_s=0.01)

    def via_redirect(target: str):
        return one(f"{base}/redirect-to?url=" + urllib.parse.quote(target, safe=""), None, settings)

    got = via_redirect(f"http://127.0.0.1:{server.port}/a.png")
    assert got.status == "blocked_address" and got.detail.startswith("127.0.0.1, a loopback address")
    got = via_redirect("http://internal.example/a.png")
    assert got.status == "blocked_address" and "'internal.example' resolves to 10.1.2.3, a private address" in got.detail
    got = via_redirect("http://[::ffff:169.254.169.254]/latest/meta-data/")
    assert got.status == "blocked_address" and "link-local" in got.detail
    assert server.hits["/a.png"] == 0 and connects == [PUBLIC_IP] * 3
    ok = via_redirect(f"{base}/a.png")  # a public hop is followed, with its name in the Host header
    assert ok.status == "ok" and server.hits["/a.png"] == 1
    assert server.host_headers[-1] == f"cdn.example:{server.port}"


@pytest.mark.parametrize("drip_s", [0.05, 2.0])
def test_dripping_headers_end_as_fetch_failed_at_the_deadline(server: ImageServer, drip_s: float):
    """Each byte comes well within the 5 s read timeout; only the one deadline ends the fetch."""
    s = local(fetch_timeout_s=5.0, fetch_deadline_s=1.0, fetch_retries=2, fetch_backoff_s=0.01)
    t0 = time.monotonic()
    got = one(server.url(f"/drip-headers/{drip_s}"), None, s)
    elapsed = time.monotonic() - t0
    assert got.status == "fetch_failed"
    assert got.detail == "timed out: fetch_deadline_s 1 s passed before the response headers arrived (after 1 attempt)"
    assert 0.9 < elapsed < 1.8
    assert server.hits[f"/drip-headers/{drip_s}"] == 1  # no retry starts after the deadline


def test_deadline_covers_retries(server: ImageServer):
    s = local(fetch_timeout_s=0.3, fetch_deadline_s=0.5, fetch_retries=5, fetch_backoff_s=0.01)
    t0 = time.monotonic()
    got = one(server.url("/slow/5/a.png"), None, s)
    assert got.status == "fetch_failed" and time.monotonic() - t0 < 1.0
    assert server.hits["/slow/5/a.png"] == 2 and "(after 2 attempts)" in got.detail


def test_https_to_a_plain_http_server_is_fetch_failed(server: ImageServer):
    got = one(f"https://127.0.0.1:{server.port}/a.png", None, local(fetch_retries=0))
    assert got.status == "fetch_failed" and "TLS error" in got.detail
