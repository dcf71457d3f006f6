"""The report in a real headless browser: Debian's chromium, started on a closed network.

The test drives chromium over the DevTools protocol (a small stdlib websocket client below, so
no extra package) to open report.html from disk, collect every console message, log entry,
uncaught exception, JavaScript dialog (alert from a hostile title would open one) and network
request, then takes a screenshot and checks its size and that it is not blank.

Skips with a reason when chromium is not installed (.ci/run installs it:
`apt-get install -y chromium`).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image
from report.test_run import make_build

from pinfeatures.report.settings import ReportSettings
from pinfeatures.report.run import write_report

CHROMIUM = next((p for p in (os.environ.get("PINFEATURES_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).exists()), None)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium); browser test skipped"),
]

# Flags for a closed network: nothing leaves the machine (no updates, sync, QUIC, DNS prefetch),
# and any host a page names resolves nowhere.
CLOSED_NETWORK_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--hide-scrollbars",
    "--mute-audio",
]


class WebSocket:
    """The client half of RFC 6455, enough for the DevTools protocol: masked text frames out,
    unmasked (possibly fragmented) text frames in."""

    def __init__(self, url: str, timeout: float = 30.0):
        assert url.startswith("ws://")
        hostport, _, path = url[len("ws://") :].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("websocket handshake: connection closed")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("websocket closed")
            buf += chunk
        return buf

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            header = struct.pack("!BB", 0x81, 0x80 | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x81, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(header + mask + masked)

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._recv_exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._recv_exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._recv_exact(8))[0]
            payload = self._recv_exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise ConnectionError("websocket closed by the browser")
            if opcode in (0x9, 0xA):  # ping/pong: not used by DevTools
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class DevTools:
    """One page target: send commands, keep every event that arrives while waiting."""

    def __init__(self, ws: WebSocket):
        self.ws = ws
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        my_id = self.next_id
        self.ws.sock.settimeout(60)  # drain() may have left a short timeout behind
        self.ws.send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, method: str | tuple[str, ...], timeout: float) -> dict:
        methods = (method,) if isinstance(method, str) else method
        for ev in self.events:
            if ev.get("method") in methods:
                return ev
        deadline = time.monotonic() + timeout
        self.ws.sock.settimeout(timeout)
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            self.events.append(msg)
            if msg.get("method") in methods:
                return msg
        raise TimeoutError(method)

    def drain(self, seconds: float) -> None:
        """Collect the events that arrive in the next `seconds` (late console errors)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.ws.sock.settimeout(left)
            try:
                self.events.append(json.loads(self.ws.recv()))
            except (socket.timeout, TimeoutError):
                break


@pytest.fixture
def chromium(tmp_path):
    """A headless chromium with a fresh profile; yields the DevTools HTTP endpoint."""
    profile = tmp_path / "profile"
    profile.mkdir()
    proc = subprocess.Popen(
        [CHROMIUM, *CLOSED_NETWORK_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        if proc.poll() is not None:
            pytest.fail(f"chromium exited with {proc.returncode}: {proc.stderr.read().decode(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("chromium did not open its DevTools port within 60 s")
        time.sleep(0.1)
    port = int(port_file.read_text().split()[0])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _open_page(endpoint: str) -> DevTools:
    targets = json.loads(urllib.request.urlopen(f"{endpoint}/json/list", timeout=10).read())
    page = next(t for t in targets if t.get("type") == "page")
    return DevTools(WebSocket(page["webSocketDebuggerUrl"]))


def _open_and_watch(endpoint: str, page_path: Path) -> tuple[DevTools, dict[str, list]]:
    """Open the page; return it with what broke the rules: console errors, log entries (CSP violations,
    failed loads), uncaught exceptions, JavaScript dialogs, and requests other than the page itself."""
    url = page_path.resolve().as_uri()
    dt = _open_page(endpoint)
    for domain in ("Page", "Runtime", "Log", "Network"):
        dt.call(f"{domain}.enable")
    dt.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1, mobile=False)
    dt.events.clear()
    dt.call("Page.navigate", url=url)
    # an alert() blocks the load event until dismissed: stop waiting at whichever comes first
    dt.wait_for(("Page.loadEventFired", "Page.javascriptDialogOpening"), timeout=30)
    dt.drain(1.0)

    events = dt.events
    problems = {
        "console": [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", []))
            for e in events
            if e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "assert", "warning")
        ],
        "log": [e["params"]["entry"].get("text", "") for e in events
                if e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") in ("error", "warning")],
        "exceptions": [e["params"]["exceptionDetails"].get("text", "") for e in events if e.get("method") == "Runtime.exceptionThrown"],
        "dialogs": [(e["params"]["type"], e["params"]["message"]) for e in events if e.get("method") == "Page.javascriptDialogOpening"],
        # the page itself is the only thing fetched; thumbnails are data: URIs (not requested)
        "requests": [e["params"]["request"]["url"] for e in events
                     if e.get("method") == "Network.requestWillBeSent" and e["params"]["request"]["url"] not in (url,)
                     and not e["params"]["request"]["url"].startswith("data:")],
    }
    return dt, problems


def _open_and_check(endpoint: str, page_path: Path) -> DevTools:
    """Open the page; assert no console error, CSP violation, exception, dialog or network fetch."""
    dt, problems = _open_and_watch(endpoint, page_path)
    assert problems == {"console": [], "log": [], "exceptions": [], "dialogs": [], "requests": []}, problems
    return dt


def test_report_opens_in_chromium_without_errors(chromium, tmp_path):
    make_build(tmp_path / "build", tmp_path / "images", with_eval=True)
    page_path = write_report(tmp_path / "build", ReportSettings(sample_pins=12, pins=("p000", "p007")))
    dt = _open_and_check(chromium, page_path)

    # the page rendered as designed: every section, the example cards, the thumbnails decoded
    probe = dt.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="""JSON.stringify({
          sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
          pins: document.querySelectorAll('#examples article.pin').length,
          imgs: Array.from(document.querySelectorAll('#examples img')).map(i => [i.complete, i.naturalWidth]),
          charts: document.querySelectorAll('svg.chart').length,
          scripts: document.scripts.length,
          hostile: Array.from(document.querySelectorAll('#examples [data-pin-id="p000"] dd')).map(d => d.textContent).join('\\n'),
          height: document.documentElement.scrollHeight,
        })""",
    )
    info = json.loads(probe["result"]["value"])
    assert info["sections"] == ["coverage", "distributions", "inputs", "examples", "evaluation", "facts"]
    assert info["pins"] == 14
    assert info["imgs"] and all(ok and w > 0 for ok, w in info["imgs"])
    assert info["charts"] >= 6
    assert info["scripts"] == 1
    assert "<script>alert(1)</script>" in info["hostile"]  # shown as text, not run
    # the expand-all button (the page's script) works under the page's CSP
    opened = dt.call(
        "Runtime.evaluate",
        returnByValue=True,
        expression="document.querySelector('[data-toggle=open]').click(); Array.from(document.querySelectorAll('#examples details')).every(d => d.open)",
    )
    assert opened["result"]["value"] is True

    shot = dt.call("Page.captureScreenshot", format="png")
    full = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
    dt.ws.close()
    png = base64.b64decode(shot["data"])
    (tmp_path / "screenshot.png").write_bytes(png)
    (tmp_path / "screenshot-full.png").write_bytes(base64.b64decode(full["data"]))
    if os.environ.get("PINFEATURES_SCREENSHOT_DIR"):  # to look at it: keep a copy
        keep = Path(os.environ["PINFEATURES_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "screenshot.png", keep / "report-screenshot.png")
        shutil.copy(tmp_path / "screenshot-full.png", keep / "report-screenshot-full.png")
        shutil.copy(page_path, keep / "report.html")
    img = Image.open(io.BytesIO(png)).convert("RGB")
    assert img.size == (1280, 900)
    colours = img.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50, "screenshot is (nearly) one colour: a blank page"
    # the dark header band is drawn at the top, and content below it
    assert img.getpixel((10, 10)) == (15, 23, 42)
    assert len(img.crop((0, 200, 1280, 900)).getcolors(maxcolors=1 << 20) or []) > 20
    assert info["height"] > 2000


def test_closed_network_flags_are_the_documented_ones():
    # docs/report.md names the flags the browser runs with: each flag it names is one this test passes
    docs = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text(encoding="utf-8")
    paragraph = docs[docs.index("closed\nnetwork") :].split("\n\n")[0]
    named = set(re.findall(r"--[a-z][a-z-]+", paragraph))
    passed = {flag.split("=")[0] for flag in CLOSED_NETWORK_FLAGS} | {"--user-data-dir"}  # the fixture adds the profile
    assert len(named) == 10 and named <= passed, named - passed
    assert "`--host-resolver-rules=MAP * ~NOTFOUND`" in paragraph and "--host-resolver-rules=MAP * ~NOTFOUND" in CLOSED_NETWORK_FLAGS


def test_hostile_fixtures_build_in_chromium(chromium, hostile_build, tmp_path):
    """The report of conftest's real build of fixtures/hostile (every variant, every pin shown)."""
    images = Path(__file__).resolve().parents[2] / "fixtures" / "hostile" / "images"
    page_path = write_report(hostile_build, ReportSettings(sample_pins=1000), images_root=images if images.is_dir() else None,
                             out=tmp_path / "report.html")
    dt = _open_and_check(chromium, page_path)
    probe = dt.call("Runtime.evaluate", returnByValue=True,
                    expression="[document.scripts.length, document.querySelectorAll('main > section').length]")
    dt.ws.close()
    assert probe["result"]["value"] == [1, 6]


def test_the_browser_check_catches_a_page_that_breaks_the_rules(chromium, tmp_path):
    """The checks above are not vacuous: a page that fetches, errors and alerts shows each fault."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>x</title></head><body>"
        "<img src='http://example.invalid/x.png'><script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    dt, problems = _open_and_watch(chromium, bad)
    dt.ws.close()
    assert problems["console"] == ["boom"]
    assert problems["requests"] == ["http://example.invalid/x.png"]
    assert problems["log"] != []  # the image that cannot load
    with pytest.raises(AssertionError, match="boom"):
        _open_and_check(chromium, bad)
    worse = tmp_path / "worse.html"
    worse.write_text("<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", encoding="utf-8")
    dt, problems = _open_and_watch(chromium, worse)
    dt.ws.close()
    assert problems["dialogs"] == [("alert", "1")]
