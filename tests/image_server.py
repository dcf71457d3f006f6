"""A small real HTTP server on 127.0.0.1 for the image-fetch tests.

    with ImageServer({"/a.png": png_bytes}) as srv:
        srv.url("/a.png")          # http://127.0.0.1:PORT/a.png

Routes (besides the static files given):
    /status/<code>               that status, short text body
    /flaky/<n>/<name>            500 for the first n requests of this path, then the file <name>
    /slow/<seconds>/<name>       waits before sending headers, then the file <name>
    /drip/<seconds>/<name>       headers at once, then one body byte every <seconds>
    /drip-headers/<seconds>      the status line and headers one byte every <seconds>, never ending
    /big/<n>?cl=1|0              n bytes of body, with or without Content-Length
    /redirect/<k>/<name>         k 302 hops, then the file <name>
    /redirect-loop               302 to itself
    /redirect-to?url=<u>         302 to any URL (e.g. file:///etc/passwd)
    /badlength/<name>            Content-Length larger than the body, then close (truncated)

Bounded: binds 127.0.0.1 only, serves at most `max_requests` requests, and shuts
itself down after `lifetime_s` even if a test forgets to stop it; sleeping handlers
wake up when it stops. `hits[path]` counts requests, `max_concurrent` the most
handlers that ran at once, `host_headers` the Host header of every request in arrival order.
The server is on 127.0.0.1, so fetching from it needs `allow_private_addresses`.
"""

from __future__ import annotations

import collections
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ImageServer:
    def __init__(self, files: dict[str, bytes] | None = None, *, lifetime_s: float = 60.0, max_requests: int = 20_000):
        self.files = dict(files or {})
        self.hits: collections.Counter[str] = collections.Counter()
        self.host_headers: list[str | None] = []
        self.max_concurrent = 0
        self.max_requests = max_requests
        self._active = 0
        self._total = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._lifetime_s = lifetime_s
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "ImageServer":
        server = self

        class Handler(_Handler):
            srv = server

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops SYNs under 8 parallel clients: 1 s retransmits

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self._lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        if self._httpd is not None:
            httpd, self._httpd = self._httpd, None
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self) -> "ImageServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; False when it stopped."""
        return not self._stop.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    srv: ImageServer
    protocol_version = "HTTP/1.0"  # close after each response: a body without Content-Length ends at EOF

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        srv = self.srv
        with srv._lock:
            srv._total += 1
            if srv._total > srv.max_requests:
                self.send_error(503, "request cap reached")
                return
            srv._active += 1
            srv.max_concurrent = max(srv.max_concurrent, srv._active)
            path = urllib.parse.urlsplit(self.path).path
            srv.hits[path] += 1
            srv.host_headers.append(self.headers.get("Host"))
            hits = srv.hits[path]
        self._counted = True
        try:
            self._route(path, hits)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up (size cap, timeout): expected in these tests
        finally:
            self._done()

    def _done(self) -> None:
        # called before the last body write too: once the client has its bytes it may send the
        # next request, and that must not count as overlapping with this one
        if getattr(self, "_counted", False):
            self._counted = False
            with self.srv._lock:
                self.srv._active -= 1

    def _send(self, code: int, body: bytes, *, length: int | None = None, ctype: str = "image/png", extra=()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self._done()
        self.wfile.write(body)

    def _file(self, name: str) -> None:
        key = "/" + name.lstrip("/")
        if key not in self.srv.files:
            self._send(404, b"not found", length=9, ctype="text/plain")
            return
        body = self.srv.files[key]
        self._send(200, body, length=len(body))

    def _route(self, path: str, hits: int) -> None:
        parts = path.strip("/").split("/")
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        head = parts[0]
        if path in self.srv.files:
            self._file(path)
        elif head == "status":
            code = int(parts[1])
            self._send(code, b"status", length=6, ctype="text/plain")
        elif head == "flaky":
            if hits <= int(parts[1]):
                self._send(500, b"boom", length=4, ctype="text/plain")
            else:
                self._file("/".join(parts[2:]))
        elif head == "slow":
            if self.srv.sleep(float(parts[1])):
                self._file("/".join(parts[2:]))
        elif head == "drip":
            body = self.srv.files.get("/" + "/".join(parts[2:]), b"x" * 100)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                if not self.srv.sleep(float(parts[1])):
                    return
        elif head == "drip-headers":
            head_bytes = b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"x" * 100_000
            for i in range(len(head_bytes)):
                self.wfile.write(head_bytes[i : i + 1])
                self.wfile.flush()
                if not self.srv.sleep(float(parts[1])):
                    return
        elif head == "big":
            n = int(parts[1])
            with_length = query.get("cl", ["1"])[0] == "1"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if with_length:
                self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"\0" * 65536
            sent = 0
            while sent < n and not self.srv._stop.is_set():
                piece = chunk[: min(len(chunk), n - sent)]
                self.wfile.write(piece)
                sent += len(piece)
        elif head == "redirect":
            k = int(parts[1])
            rest = "/".join(parts[2:])
            target = f"/redirect/{k - 1}/{rest}" if k > 1 else f"/{rest}"
            self._send(302, b"", length=0, extra=[("Location", target)])
        elif head == "redirect-loop":
            self._send(302, b"", length=0, extra=[("Location", "/redirect-loop")])
        elif head == "redirect-to":
            self._send(302, b"", length=0, extra=[("Location", query["url"][0])])
        elif head == "badlength":
            body = self.srv.files.get("/" + "/".join(parts[1:]), b"x")
            self._send(200, body[: len(body) // 2], length=len(body))
        else:
            self._send(404, b"not found", length=9, ctype="text/plain")
