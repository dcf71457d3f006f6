"""Reading, fetching, hashing and decoding Pin images, robust to every bad input.

What goes in: the `image` values of the pins table (a path relative to an images
root, an absolute path inside it, or an http(s) URL; None or empty when the Pin has
none). What comes out: one `FetchedImage` per value, in input order, with the raw
bytes and their sha256 when the read worked, or a failure status and a one-line
reason when it did not. `decode_image` turns bytes into a loaded RGB `PIL.Image`.

A bad image never raises out of `read_images` / `hash_images`: it becomes a status.
The statuses are the image half of the caption stage's `caption_status` values:

    ok            bytes read (decoding may still say `unreadable` / `too_large`)
    missing       no value, no images root, or no such file
    outside_root  a path that escapes the images root (.., absolute elsewhere, symlink out)
    unreadable    not a regular file, permission denied, not an image, truncated, zero bytes
    too_large     more bytes than max_bytes, or more pixels than max_pixels (decompression bombs)
    fetch_failed  HTTP error status, timeout, connection error, redirect loop or refused redirect
    bad_url       a URL with a scheme other than http/https, or one that does not parse

Why stdlib urllib rather than requests/httpx: the fetcher needs only GET, a timeout,
a streamed size cap, redirects limited to http(s), and retries, all of which a small
`OpenerDirector` built from urllib's own handlers gives without a new dependency.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import http.client
import io
import math
import os
import random
import re
import socket
import stat
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from PIL import Image, ImageOps

from pinfeatures.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pinfeatures.config import CaptionConfig

STATUSES: tuple[str, ...] = ("ok", "missing", "outside_root", "unreadable", "too_large", "fetch_failed", "bad_url")
"""Every status a FetchedImage or ImageError can carry."""

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "TIFF")
"""Pillow formats decode_image will open (web image formats). Everything else is `unreadable`:
Pillow's long tail of plugins (EPS runs Ghostscript, PSD, FITS, ...) is attack surface that
Pin images never need. MPO (multi-picture JPEG from cameras) opens through the JPEG plugin."""

USER_AGENT = "pinfeatures-image-fetch/0.1"
_CHUNK = 256 * 1024
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")  # 2+ chars, so `C:\x` is not a scheme
_RETRY_HTTP = frozenset({408, 429})  # 4xx codes that mean "try again"; other 4xx are final


@dataclass(frozen=True)
class ImageSettings:
    """Limits for reading, fetching and decoding images."""

    max_bytes: int = 20 * 1024 * 1024
    """Largest file / response body accepted; more is `too_large` (checked while streaming)."""
    max_pixels: int = 40_000_000
    """Largest declared width x height decode_image accepts; more is `too_large`."""
    fetch_timeout_s: float = 10.0
    """Socket timeout: connect, and each wait for response bytes."""
    fetch_retries: int = 2
    """Extra attempts after a connection error, timeout, 5xx, 408 or 429 (never other 4xx)."""
    fetch_concurrency: int = 8
    """Most HTTP requests in flight at once (local reads are not counted)."""
    fetch_deadline_s: float = 60.0
    """Whole-attempt cap (headers + body), so a server dripping one byte per timeout cannot hold a worker."""
    fetch_backoff_s: float = 0.5
    """First retry waits about this long, doubling each retry (with jitter), capped at 8 s."""
    max_redirects: int = 5

    def __post_init__(self) -> None:
        # a nonsense limit would silently mark every image too_large or never time out; ConfigError
        # because these come from the user's [caption] settings (max_image_bytes -> max_bytes, ...)
        for name in ("max_bytes", "max_pixels", "fetch_concurrency"):
            if getattr(self, name) < 1:
                raise ConfigError(f"image setting {name} must be >= 1, got {getattr(self, name)}")
        for name in ("fetch_timeout_s", "fetch_deadline_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"image setting {name} must be > 0, got {getattr(self, name)}")
        for name in ("fetch_retries", "fetch_backoff_s", "max_redirects"):
            if getattr(self, name) < 0:
                raise ConfigError(f"image setting {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_caption_config(cls, cfg: "CaptionConfig") -> "ImageSettings":
        """The image limits of a CaptionConfig (`max_image_bytes`, `max_image_pixels`, `fetch_*`)."""
        return cls(
            max_bytes=cfg.max_image_bytes,
            max_pixels=cfg.max_image_pixels,
            fetch_timeout_s=cfg.fetch_timeout_s,
            fetch_retries=cfg.fetch_retries,
            fetch_concurrency=cfg.fetch_concurrency,
        )


class ImageError(Exception):
    """One image that cannot be used: `.status` (one of STATUSES) and `.detail` (a one-line reason)."""

    def __init__(self, status: str, detail: str | None = None):
        if status not in STATUSES or status == "ok":
            raise ValueError(f"not a failure status: {status!r}")
        super().__init__(f"{status}: {detail}" if detail else status)
        self.status = status
        self.detail = detail


@dataclass
class FetchedImage:
    """The result of reading one `image` value."""

    ref: str
    """The pins.image value as given."""
    status: str
    """`ok` or a failure status (see STATUSES)."""
    data: bytes | None
    """Raw bytes when ok (None from hash_images, which drops them after hashing)."""
    sha256: str | None
    """Hex sha256 of the bytes when ok."""
    detail: str | None = None
    """Human-readable reason on failure."""


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of `data` (the key of the caption cache)."""
    return hashlib.sha256(data).hexdigest()


# -- classifying a reference -----------------------------------------------------------


def is_url(ref: str) -> bool:
    """True when `ref` starts with a URL scheme (`http:`, `file:`, `data:`, ...), not a path.

    A one-letter scheme is a Windows drive (`C:\\x`), so it counts as a path.
    """
    return _SCHEME_RE.match(ref.strip()) is not None


def _check_url(ref: str) -> str:
    """The URL to fetch, or ImageError('bad_url'): http/https with a host, and nothing else."""
    url = ref.strip()
    m = _SCHEME_RE.match(url)
    scheme = m.group(1).lower() if m else ""
    if scheme not in ("http", "https"):
        raise ImageError("bad_url", f"scheme {scheme + ':'!r} not allowed (http and https only)")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        # urllib would reject or, worse, send a header-splitting request line
        raise ImageError("bad_url", "URL contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ImageError("bad_url", f"URL does not parse: {exc}") from None
    if not parts.hostname:
        raise ImageError("bad_url", "URL has no host")
    if not url.isascii():
        # browsers send IRIs as IDNA host + percent-encoded UTF-8; http.client only takes ASCII
        try:
            host = parts.hostname if parts.hostname.isascii() else parts.hostname.encode("idna").decode("ascii")
            host = f"[{host}]" if ":" in host else host  # IPv6 literal
        except UnicodeError as exc:
            raise ImageError("bad_url", f"host does not encode: {exc}") from None
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        netloc = userinfo + host + (f":{parts.port}" if parts.port is not None else "")
        safe = "".join(chr(c) for c in range(0x21, 0x7F))
        url = urllib.parse.urlunsplit(
            (parts.scheme, urllib.parse.quote(netloc, safe=safe), urllib.parse.quote(parts.path, safe=safe),
             urllib.parse.quote(parts.query, safe=safe), urllib.parse.quote(parts.fragment, safe=safe))
        )
    return url


# -- local files -----------------------------------------------------------------------


def resolve_local(ref: str, images_root: Path) -> Path:
    """The real path of the local image `ref`, confined to `images_root`.

    Relative paths resolve under images_root; absolute paths are allowed only inside it.
    Symlinks are resolved first, so a link that points out of the root is refused.
    Raises ImageError: `outside_root` (escapes the root), `missing` (no such file, or the
    root itself does not exist), `unreadable` (not a regular file).
    """
    if "\x00" in ref:
        raise ImageError("missing", "path contains a NUL byte")
    try:
        root = Path(images_root).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ImageError("missing", f"images root {str(images_root)!r} not found: {exc}") from None
    p = Path(ref.strip())
    candidate = p if p.is_absolute() else root / p
    try:
        # strict=False: an escaping path is outside_root whether or not its target exists
        real = candidate.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # symlink loop, name too long
        raise ImageError("missing", f"cannot resolve path: {exc}") from None
    if real != root and not real.is_relative_to(root):
        raise ImageError("outside_root", f"{ref!r} resolves outside the images root")
    try:
        st = real.stat()
    except FileNotFoundError:
        raise ImageError("missing", f"no such file: {ref!r}") from None
    except OSError as exc:
        if exc.errno in (errno.ENAMETOOLONG, errno.ENOTDIR, errno.ELOOP):
            raise ImageError("missing", f"no such file: {ref!r} ({exc.strerror})") from None
        raise ImageError("unreadable", f"cannot stat {ref!r}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("unreadable", f"{ref!r} is not a regular file")
    return real


def read_local(ref: str, images_root: Path, max_bytes: int) -> bytes:
    """The bytes of one local image, confined like resolve_local; ImageError on any failure.

    For callers that want one file without the thread pool (the report's thumbnails).
    """
    return _read_local(resolve_local(ref, images_root), ref, max_bytes)


def _read_local(path: Path, ref: str, max_bytes: int) -> bytes:
    # O_NOFOLLOW: the path was resolved, so a symlink here was swapped in after the check;
    # O_NONBLOCK: a FIFO swapped in would otherwise block the worker forever.
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise ImageError("missing", f"no such file: {ref!r}") from None
    except OSError as exc:
        raise ImageError("unreadable", f"cannot open {ref!r}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("unreadable", f"{ref!r} is not a regular file")
        if st.st_size > max_bytes:
            raise ImageError("too_large", f"{st.st_size} bytes > max_bytes {max_bytes}")
        try:
            data = _read_capped(fh, max_bytes)
        except OSError as exc:
            raise ImageError("unreadable", f"cannot read {ref!r}: {exc.strerror or exc}") from None
    if data is None:  # the file grew between fstat and read
        raise ImageError("too_large", f"more than max_bytes {max_bytes} bytes")
    return data


def _read_capped(fh, max_bytes: int, deadline: float | None = None) -> bytes | None:
    """Read until EOF; None as soon as more than max_bytes arrive, so memory stays capped."""
    buf = bytearray()
    # read1 returns after one socket read, so the deadline is checked while bytes trickle in
    # (read(n) on a response would block until n bytes or EOF)
    read = getattr(fh, "read1", fh.read)
    while True:
        chunk = read(min(_CHUNK, max_bytes + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            return None
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("response body took longer than fetch_deadline_s")


# -- HTTP ------------------------------------------------------------------------------


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects only to http(s) URLs, at most `max_redirects` of them."""

    def __init__(self, max_redirects: int):
        super().__init__()
        self.max_redirections = max_redirects
        self.max_repeats = min(self.max_repeats, max(max_redirects, 1))

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlsplit(newurl).scheme.lower()
        if scheme not in ("http", "https"):
            raise urllib.error.HTTPError(newurl, code, f"redirect to a {scheme or 'scheme-less'} URL not allowed", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(max_redirects: int) -> urllib.request.OpenerDirector:
    # Built by hand, not build_opener(): no FileHandler, FTPHandler or DataHandler, so neither a
    # ref nor a redirect can make the fetcher read local files or speak another protocol.
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),  # honours http(s)_proxy / no_proxy like every HTTP client
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        _RedirectHandler(max_redirects),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    opener.addheaders = [("User-Agent", USER_AGENT), ("Accept", "image/*,*/*;q=0.5")]
    return opener


class _Retryable(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _fetch_once(opener: urllib.request.OpenerDirector, url: str, settings: ImageSettings) -> bytes:
    deadline = time.monotonic() + settings.fetch_deadline_s
    try:
        resp = opener.open(url, timeout=settings.fetch_timeout_s)
    except urllib.error.HTTPError as exc:
        code = exc.code
        try:
            exc.close()  # release the error body's socket
        except Exception:  # noqa: BLE001
            pass
        if code >= 500 or code in _RETRY_HTTP:
            raise _Retryable(f"HTTP {code} {exc.reason}") from None
        # 3xx here: a redirect loop, too many redirects, or one to a refused scheme
        raise ImageError("fetch_failed", f"HTTP {code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise _Retryable("timed out connecting") from None
        if isinstance(reason, str) and "unknown url type" in reason:
            raise ImageError("bad_url", reason) from None
        raise _Retryable(f"connection error: {reason}") from None
    except (TimeoutError, socket.timeout):
        raise _Retryable(f"timed out after {settings.fetch_timeout_s:g} s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _Retryable(f"connection error: {type(exc).__name__}: {exc}") from None
    except ValueError as exc:  # urllib's own URL checks
        raise ImageError("bad_url", f"URL rejected: {exc}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        n = -1  # absent or malformed: ignored, the streamed count still caps the body
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                pass
            if n > settings.max_bytes:
                raise ImageError("too_large", f"Content-Length {n} > max_bytes {settings.max_bytes}")
        try:
            data = _read_capped(resp, settings.max_bytes, deadline)
        except (TimeoutError, socket.timeout) as exc:
            raise _Retryable(f"timed out reading the body: {exc}") from None
        except (http.client.HTTPException, OSError) as exc:  # IncompleteRead, reset
            raise _Retryable(f"body read failed: {type(exc).__name__}: {exc}") from None
    if data is None:
        raise ImageError("too_large", f"body exceeds max_bytes {settings.max_bytes}")
    if n >= 0 and len(data) < n:
        # http.client's read(n) returns short at EOF instead of raising: a cut connection
        raise _Retryable(f"body truncated: {len(data)} of {n} bytes")
    return data


def _fetch(url: str, settings: ImageSettings, opener: urllib.request.OpenerDirector, gate: threading.Semaphore) -> bytes:
    """GET `url` with retries and backoff on transient failures; ImageError on a final one."""
    last = "no attempt made"
    for attempt in range(settings.fetch_retries + 1):
        if attempt:
            wait = min(8.0, settings.fetch_backoff_s * 2 ** (attempt - 1))
            time.sleep(wait * (0.5 + random.random() / 2))  # jitter: don't retry in lockstep
        with gate:
            try:
                return _fetch_once(opener, url, settings)
            except _Retryable as exc:
                last = exc.detail
    raise ImageError("fetch_failed", f"{last} (after {settings.fetch_retries + 1} attempts)")


# -- reading many refs -----------------------------------------------------------------


def _load_one(ref, images_root: Path | None, settings: ImageSettings, opener, gate, keep_data: bool) -> FetchedImage:
    """Bytes and hash of one ref; every failure becomes a status (never raises)."""
    shown = ref if isinstance(ref, str) else ("" if ref is None else str(ref))
    try:
        if ref is None or (isinstance(ref, float) and math.isnan(ref)):
            raise ImageError("missing", "no image value")
        if not isinstance(ref, str):
            raise ImageError("missing", f"image value is a {type(ref).__name__}, not a string")
        if not ref.strip():
            raise ImageError("missing", "empty image value")
        if is_url(ref):
            data = _fetch(_check_url(ref), settings, opener, gate)
        else:
            if images_root is None:
                raise ImageError("missing", "no images root given")
            data = _read_local(resolve_local(ref, images_root), ref, settings.max_bytes)
        return FetchedImage(shown, "ok", data if keep_data else None, sha256_hex(data))
    except ImageError as exc:
        return FetchedImage(shown, exc.status, None, None, exc.detail)
    except MemoryError:
        return FetchedImage(shown, "too_large", None, None, "out of memory reading the image")
    except Exception as exc:  # noqa: BLE001 - one bad image must never stop a run of millions
        status = "fetch_failed" if isinstance(ref, str) and is_url(ref) else "unreadable"
        return FetchedImage(shown, status, None, None, f"{type(exc).__name__}: {exc}")


def _run(refs, images_root, settings: ImageSettings, workers: int, keep_data: bool, max_in_flight: int | None):
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    # Bounded in-flight: at most this many refs are submitted but not yet yielded, so memory is
    # about max_in_flight x max_bytes however many refs there are (the refs iterable is consumed lazily).
    limit = max_in_flight if max_in_flight is not None else 2 * workers
    if limit < 1:
        raise ValueError(f"max_in_flight must be >= 1, got {limit}")
    root = Path(images_root) if images_root is not None else None
    return _generate(iter(refs), root, settings, workers, keep_data, limit)


def _generate(it, root, settings: ImageSettings, workers: int, keep_data: bool, limit: int) -> Iterator[FetchedImage]:
    opener = _opener(settings.max_redirects)
    gate = threading.BoundedSemaphore(min(workers, settings.fetch_concurrency))
    pending: collections.deque[Future] = collections.deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pinfeatures-images")
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    ref = next(it)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(pool.submit(_load_one, ref, root, settings, opener, gate, keep_data))
            if not pending:
                return
            yield pending.popleft().result()  # input order: wait for the oldest
    finally:
        # an abandoned generator (break, exception) cancels what has not started
        pool.shutdown(wait=True, cancel_futures=True)


def read_images(
    refs: Iterable[str | None],
    images_root: Path | None,
    settings: ImageSettings,
    *,
    workers: int = 8,
    max_in_flight: int | None = None,
) -> Iterator[FetchedImage]:
    """Read local files and fetch http(s) URLs in parallel, yielding one FetchedImage per ref in input order.

    `refs` is consumed lazily; at most `max_in_flight` (default 2 x workers) results are held
    ahead of the consumer. None/empty -> `missing`; a local path without `images_root` ->
    `missing` ("no images root given"); see the module docstring for every status.
    """
    return _run(refs, images_root, settings, workers, True, max_in_flight)


def hash_images(
    refs: Iterable[str | None],
    images_root: Path | None,
    settings: ImageSettings,
    *,
    workers: int = 8,
    max_in_flight: int | None = None,
) -> Iterator[FetchedImage]:
    """Like read_images, but `data` is None in every result: only status and sha256 (cache lookups)."""
    return _run(refs, images_root, settings, workers, False, max_in_flight)


# -- decoding --------------------------------------------------------------------------


def decode_image(
    data: bytes,
    *,
    max_pixels: int,
    target_size: int | None = None,
    formats: Iterable[str] = ALLOWED_FORMATS,
) -> Image.Image:
    """Decode image bytes to a loaded RGB image, or raise ImageError.

    - more than `max_pixels` declared pixels -> `too_large`, checked on the header before any
      pixel is decoded (so a tiny file declaring 100k x 100k costs nothing). Pillow's global
      `Image.MAX_IMAGE_PIXELS` is left alone; its own DecompressionBombError (above 2x that
      global) is also `too_large`.
    - JPEG: decoded in draft mode at the smallest 1/1, 1/2, 1/4 or 1/8 scale whose short side is
      still >= `target_size` (when given).
    - animated images: the first frame. EXIF orientation is applied.
    - every mode (CMYK, I;16, I, F, P/L/RGB with transparency, LA, RGBA, ...) becomes RGB;
      transparency is composited on white.
    - zero bytes, truncated, not an image, a format outside `formats` -> `unreadable`.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageError("unreadable", f"expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageError("unreadable", "zero bytes")
    if target_size is not None and target_size < 1:
        raise ValueError(f"target_size must be >= 1, got {target_size}")
    try:
        with Image.open(io.BytesIO(data), formats=list(formats)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError("too_large", f"{w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
            if target_size and im.format in ("JPEG", "MPO"):
                im.draft(None, (target_size, target_size))
            im.load()  # first frame only: Image.open leaves animated images at frame 0
            if im.size[0] * im.size[1] > max_pixels:  # GIF frames may grow the canvas on load
                raise ImageError("too_large", f"{im.size[0]}x{im.size[1]} pixels > max_pixels {max_pixels}")
            return _to_rgb(_orient(im))
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError("too_large", str(exc)) from None
    except MemoryError:
        raise ImageError("too_large", "out of memory decoding the image") from None
    except Image.UnidentifiedImageError:
        raise ImageError("unreadable", "not an image (or not an allowed format)") from None
    except Exception as exc:  # noqa: BLE001 - truncated data and corrupt headers raise many types
        raise ImageError("unreadable", f"{type(exc).__name__}: {exc}") from None


def _orient(im: Image.Image) -> Image.Image:
    try:
        out = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block should not lose an otherwise good image
        return im
    return out if out is not None else im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _high_depth_to_l(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(white, rgba).convert("RGB")
    elif im.mode == "RGB":
        out = im.copy()  # detach from the file object; returned image must outlive it
    else:
        out = im.convert("RGB")  # CMYK, YCbCr, L, 1, P, LAB, HSV
    out.load()
    return out


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float greyscale to 8-bit L by scaling, not clipping (convert('L') clips at 255)."""
    import numpy as np

    arr = np.asarray(im).astype(np.float64)
    if im.mode.startswith("I;16"):
        scaled = arr / 257.0
    else:
        hi = float(np.nanmax(arr)) if arr.size else 0.0
        lo = float(np.nanmin(arr)) if arr.size else 0.0
        if lo >= 0 and hi <= 255:
            scaled = arr
        elif lo >= 0 and hi <= 65535:
            scaled = arr / 257.0  # 16-bit PNGs often open as mode I
        else:
            scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    l_img = Image.fromarray(np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8))  # 2-D uint8 -> L
    if "transparency" in im.info:
        im.info.pop("transparency", None)  # a 16-bit key cannot apply to the 8-bit image
    return l_img


__all__ = [
    "ALLOWED_FORMATS",
    "STATUSES",
    "FetchedImage",
    "ImageError",
    "ImageSettings",
    "decode_image",
    "hash_images",
    "is_url",
    "read_images",
    "read_local",
    "resolve_local",
    "sha256_hex",
]
