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
    blocked_address  the host (or a redirect hop's host) resolves to a loopback, private, link-local,
                  multicast, reserved or unspecified address; no connection is made

Safe fetching: each hop resolves its host once (`resolve_host`), refuses the URL when any
address is not public (unless `allow_private_addresses`), and connects to the checked address
itself, sending the name only as the Host header / TLS SNI, so DNS cannot answer differently at
connect time (rebinding). Redirects are followed by hand, each hop checked the same way. One
deadline (`fetch_deadline_s`) covers the name lookup, connecting, the headers, the body and every
retry.

Why stdlib http.client rather than requests/httpx: the fetcher needs only GET, a deadline,
a streamed size cap, redirects limited to http(s), retries and a connection pinned to a checked
address, all of which a small http.client subclass gives without a new dependency. Proxies
(http(s)_proxy) are not used: through a proxy the address check could not see where it connects.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import http.client
import io
import ipaddress
import math
import os
import random
import re
import socket
import ssl
import stat
import threading
import time
import urllib.parse
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from PIL import Image, ImageOps

from pinfeatures.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pinfeatures.caption.settings import CaptionSettings

STATUSES: tuple[str, ...] = ("ok", "missing", "outside_root", "unreadable", "too_large", "fetch_failed", "bad_url", "blocked_address")
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
    """Most seconds one image's fetch may take: name lookups, connect, headers, body, redirects and retries together,
    so a server dripping one byte per timeout cannot hold a worker."""
    fetch_backoff_s: float = 0.5
    """First retry waits about this long, doubling each retry (with jitter), capped at 8 s."""
    max_redirects: int = 5
    allow_private_addresses: bool = False
    """Fetch from loopback, private, link-local, ... addresses too (a local image server); off by default."""

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
    def from_caption_config(cls, cfg: "CaptionSettings") -> "ImageSettings":
        """The image limits of a CaptionSettings (`max_image_bytes`, `max_image_pixels`, `fetch_*`)."""
        return cls(
            max_bytes=cfg.max_image_bytes,
            max_pixels=cfg.max_image_pixels,
            fetch_timeout_s=cfg.fetch_timeout_s,
            fetch_retries=cfg.fetch_retries,
            fetch_concurrency=cfg.fetch_concurrency,
            fetch_deadline_s=cfg.fetch_deadline_s,
            allow_private_addresses=cfg.allow_private_addresses,
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


def _read_capped(fh, max_bytes: int) -> bytes | None:
    """Read until EOF; None as soon as more than max_bytes arrive, so memory stays capped."""
    buf = bytearray()
    # read1 returns after one read, so the size cap is checked while bytes trickle in
    read = getattr(fh, "read1", fh.read)
    while True:
        chunk = read(min(_CHUNK, max_bytes + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            return None


# -- addresses -------------------------------------------------------------------------

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: IPv4 addresses as DNS64 hands them to IPv6-only hosts


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (IPv4 and IPv6, resolver order, no repeats).

    The one DNS lookup of a fetch hop: the addresses it returns are checked and then connected
    to directly, so a second lookup cannot answer differently (DNS rebinding). Tests monkeypatch
    this to make a name resolve where they want.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def address_problem(ip: str) -> str | None:
    """Why a fetch must not connect to `ip` (`loopback`, `private`, `link-local`, ...); None when it is public.

    An IPv4 address inside IPv6 (`::ffff:a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`) is
    judged as the IPv4 address it reaches.
    """
    try:
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(ip)
    except ValueError:
        return "unparsable"
    if isinstance(addr, ipaddress.IPv6Address):
        inner = addr.ipv4_mapped or addr.sixtofour
        if inner is None and addr in _NAT64:
            inner = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if inner is not None:
            addr = inner
    for kind, hit in (
        ("unspecified", addr.is_unspecified),
        ("loopback", addr.is_loopback),
        ("link-local", addr.is_link_local),  # 169.254.169.254: the cloud metadata service
        ("multicast", addr.is_multicast),
        ("reserved", addr.is_reserved),
        ("private", addr.is_private),  # also documentation, benchmarking and other special ranges
        ("site-local", isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local),
        ("non-public", not addr.is_global),  # 100.64.0.0/10, carrier-grade NAT
    ):
        if hit:
            return kind
    return None


def _resolve_by(host: str, port: int, settings: ImageSettings, deadline: float) -> list[str]:
    """resolve_host, waiting at most until the fetch deadline.

    getaddrinfo has no timeout of its own (a dead resolver holds the caller for the system's
    retries, often 20 s or more), so the lookup runs in a daemon thread of its own and the fetch
    gives up at the deadline; the abandoned thread ends when the lookup returns. A thread per
    lookup, not a pool: hung lookups cannot use up the workers that later fetches need.
    """
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise _Retryable(_deadline_detail(settings, f"before resolving {host!r}"))
    answer: dict[str, object] = {}
    done = threading.Event()

    def lookup() -> None:
        try:
            answer["ips"] = resolve_host(host, port)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the fetching thread
            answer["error"] = exc
        finally:
            done.set()

    threading.Thread(target=lookup, name="pinfeatures-resolve", daemon=True).start()
    if not done.wait(remaining):
        raise _Retryable(_deadline_detail(settings, f"while resolving {host!r}"))
    if "error" in answer:
        raise answer["error"]  # type: ignore[misc]
    return answer["ips"]  # type: ignore[return-value]


def _checked_addresses(host: str, port: int, settings: ImageSettings, deadline: float) -> list[str]:
    """The addresses to connect to for `host`, each one allowed; ImageError `blocked_address` when any is not.

    Any blocked address blocks the host: a name that answers with one public and one private
    address would otherwise reach the private one on a retry or a second connect.
    """
    try:
        ips = _resolve_by(host, port, settings, deadline)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_NONAME:
            raise ImageError("fetch_failed", f"host {host!r} not found") from None
        raise _Retryable(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    except UnicodeError as exc:  # a label too long for IDNA
        raise ImageError("bad_url", f"host {host!r} does not encode: {exc}") from None
    if not ips:
        raise _Retryable(f"cannot resolve {host!r}: no addresses")
    if not settings.allow_private_addresses:
        for ip in ips:
            kind = address_problem(ip)
            if kind is not None:
                where = ip if ip == host else f"{host!r} resolves to {ip}"
                article = "an" if kind[0] in "aeiou" else "a"
                raise ImageError("blocked_address", f"{where}, {article} {kind} address (--allow-private-addresses fetches it)")
    return ips


# -- HTTP ------------------------------------------------------------------------------


def _open_socket(ip: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to exactly `ip` (no name lookup); the only place a fetch connects."""
    return socket.create_connection((ip, port), timeout=timeout)


class _DeadlineReader(io.RawIOBase):
    """Reads from the socket, each read waiting at most the per-read timeout and never past the deadline,
    so a server that drips its headers or body one byte at a time cannot hold a fetch longer."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float):
        super().__init__()
        self._sock, self._deadline, self._read_timeout = sock, deadline, read_timeout
        # the socket's own reader: it holds a reference, so the socket stays open until the body is read
        # even after http.client closes the connection (HTTP/1.0, Connection: close)
        self._raw = sock.makefile("rb", buffering=0)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()
        super().close()

    def readinto(self, buf) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed()
        self._sock.settimeout(min(self._read_timeout, remaining))
        try:
            return self._raw.readinto(buf)
        except TimeoutError:
            if time.monotonic() >= self._deadline:
                raise _DeadlinePassed() from None
            raise


class _DeadlinePassed(TimeoutError):
    pass


class _DeadlineSocket:
    """The connected socket as http.client sees it: sends as usual, reads through a _DeadlineReader."""

    def __init__(self, sock: socket.socket, deadline: float, read_timeout: float):
        self._sock, self._deadline, self._read_timeout = sock, deadline, read_timeout

    def makefile(self, mode: str = "rb", *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline, self._read_timeout))

    def sendall(self, data) -> None:
        self._sock.settimeout(max(0.001, min(self._read_timeout, self._deadline - time.monotonic())))
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to the address that was checked, speaking to `host`: the Host header, TLS SNI and the
    certificate check use the name, while the TCP connection goes to `ip` without a second lookup."""

    def __init__(self, host: str, port: int, ip: str, tls: ssl.SSLContext | None, timeout: float, deadline: float):
        super().__init__(host, port, timeout=timeout)
        self.ip, self.tls, self.deadline = ip, tls, deadline
        if tls is not None:
            self.default_port = 443  # Host: name, not name:443

    def connect(self) -> None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _DeadlinePassed()
        sock = _open_socket(self.ip, self.port, min(self.timeout, remaining))
        try:
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = _DeadlineSocket(sock, self.deadline, self.timeout)


_TLS = ssl.create_default_context()
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _Retryable(Exception):
    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _deadline_detail(settings: ImageSettings, what: str) -> str:
    return f"timed out: fetch_deadline_s {settings.fetch_deadline_s:g} s passed {what}"


def _connect(parts: urllib.parse.SplitResult, settings: ImageSettings, deadline: float) -> _PinnedConnection:
    """An open connection to the URL's host at one of its checked addresses (the first that answers)."""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    host = parts.hostname or ""
    last = "no address"
    for ip in _checked_addresses(host, port, settings, deadline):
        conn = _PinnedConnection(host, port, ip, _TLS if https else None, settings.fetch_timeout_s, deadline)
        try:
            conn.connect()
            return conn
        except _DeadlinePassed:
            conn.close()
            raise _Retryable(_deadline_detail(settings, "while connecting")) from None
        except (TimeoutError, socket.timeout):
            last = f"timed out connecting to {ip}"
        except ssl.SSLError as exc:
            last = f"TLS error: {exc.reason or exc}"
        except OSError as exc:
            last = f"connection error: {exc.strerror or exc}"
        conn.close()
    raise _Retryable(last)


def _get_once(url: str, settings: ImageSettings, deadline: float) -> bytes:
    """GET `url`, following redirects (each hop checked like the first), until the deadline."""
    for _hop in range(settings.max_redirects + 1):
        parts = urllib.parse.urlsplit(url)
        conn = _connect(parts, settings, deadline)
        try:
            path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            try:
                conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*,*/*;q=0.5", "Connection": "close"})
                resp = conn.getresponse()
            except _DeadlinePassed:
                raise _Retryable(_deadline_detail(settings, "before the response headers arrived")) from None
            except (TimeoutError, socket.timeout):
                raise _Retryable(f"timed out after {settings.fetch_timeout_s:g} s waiting for the response") from None
            except (http.client.HTTPException, OSError) as exc:
                raise _Retryable(f"connection error: {type(exc).__name__}: {exc}") from None
            code = resp.status
            if code in _REDIRECTS and resp.getheader("Location"):
                url = _redirect_target(url, resp.getheader("Location", ""))
                continue
            if code >= 500 or code in _RETRY_HTTP:
                raise _Retryable(f"HTTP {code} {resp.reason}")
            if not 200 <= code < 300:
                raise ImageError("fetch_failed", f"HTTP {code} {resp.reason}")
            return _read_body(resp, settings)
        finally:
            conn.close()
    raise ImageError("fetch_failed", f"more than max_redirects {settings.max_redirects} redirects")


def _redirect_target(url: str, location: str) -> str:
    """The next hop's URL: http(s) only (never file:, ftp:, data:), checked like a ref."""
    target = urllib.parse.urljoin(url, location.strip())
    scheme = urllib.parse.urlsplit(target).scheme.lower()
    if scheme not in ("http", "https"):
        raise ImageError("fetch_failed", f"redirect to a {scheme or 'scheme-less'} URL not allowed")
    try:
        return _check_url(target)
    except ImageError as exc:
        raise ImageError("fetch_failed", f"redirect to a bad URL: {exc.detail}") from None


def _read_body(resp: http.client.HTTPResponse, settings: ImageSettings) -> bytes:
    length = resp.getheader("Content-Length")
    n = -1  # absent or malformed: ignored, the streamed count still caps the body
    if length is not None:
        try:
            n = int(length)
        except ValueError:
            pass
        if n > settings.max_bytes:
            raise ImageError("too_large", f"Content-Length {n} > max_bytes {settings.max_bytes}")
    try:
        data = _read_capped(resp, settings.max_bytes)
    except _DeadlinePassed:
        raise _Retryable(_deadline_detail(settings, "while reading the body")) from None
    except (TimeoutError, socket.timeout) as exc:
        raise _Retryable(f"timed out reading the body: {exc}") from None
    except (http.client.HTTPException, OSError) as exc:  # IncompleteRead, reset
        raise _Retryable(f"body read failed: {type(exc).__name__}: {exc}") from None
    if data is None:
        raise ImageError("too_large", f"body exceeds max_bytes {settings.max_bytes}")
    if n >= 0 and len(data) < n:
        # http.client's read returns short at EOF instead of raising: a cut connection
        raise _Retryable(f"body truncated: {len(data)} of {n} bytes")
    return data


def _fetch(url: str, settings: ImageSettings, gate: threading.Semaphore) -> bytes:
    """GET `url` with retries and backoff on transient failures; ImageError on a final one.

    One deadline (fetch_deadline_s, from the first attempt's start) covers every attempt, connect,
    headers and body: no retry starts after it.
    """
    last = "no attempt made"
    deadline: float | None = None
    attempts = 0
    for attempt in range(settings.fetch_retries + 1):
        if attempt:
            wait = min(8.0, settings.fetch_backoff_s * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # jitter
            assert deadline is not None
            if time.monotonic() + wait >= deadline:
                break
            time.sleep(wait)
        with gate:
            if deadline is None:  # the clock starts with the first slot, not while queued behind other fetches
                deadline = time.monotonic() + settings.fetch_deadline_s
            attempts += 1
            try:
                return _get_once(url, settings, deadline)
            except _Retryable as exc:
                last = exc.detail
    raise ImageError("fetch_failed", f"{last} (after {attempts} attempt{'s' if attempts != 1 else ''})")


# -- reading many refs -----------------------------------------------------------------


def _load_one(ref, images_root: Path | None, settings: ImageSettings, gate, keep_data: bool) -> FetchedImage:
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
            data = _fetch(_check_url(ref), settings, gate)
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
                pending.append(pool.submit(_load_one, ref, root, settings, gate, keep_data))
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
    "address_problem",
    "FetchedImage",
    "ImageError",
    "ImageSettings",
    "decode_image",
    "hash_images",
    "is_url",
    "read_images",
    "read_local",
    "resolve_host",
    "resolve_local",
    "sha256_hex",
]
