"""The caption and fetch cache: append-only Parquet parts in a folder many workers share.

What goes in: batches of caption results (sha256, fingerprint, caption, status, model, detail),
CLIP scores, URL fetch results (url -> sha256 of the bytes or the failure status) and the
fetched bytes themselves. What comes out: for a list of sha256 under one fingerprint (or a list
of URLs), what any worker stored so far.

The folder is a local path or an fsspec URL (`s3://bucket/cache`, `gs://...`, `file:///...`;
fsspec and the matching filesystem package are needed only for URLs). Layout:

    captions/<part>.parquet      sha256, fingerprint, caption, status, model, detail, created_at
    clip_scores/<part>.parquet   sha256, fingerprint, clip_fp, score
    fetches/<part>.parquet       url, status, sha256, detail, allow_private, fetched_at
    fingerprints/<part>.parquet  fingerprint, settings (the JSON the fingerprint hashes), created_at
    file_hashes/<part>.parquet   path, size, mtime_ns, sha256 (weights files hashed once)
    blobs/<sha[:2]>/<sha256>     fetched image bytes, content-addressed, trimmed oldest first
    leases/<fp[:16]>/<sha256>    a worker's claim on one image it is captioning: owner, expiry

Why parts: nothing is ever rewritten in place, so workers on different machines never need a
lock to write. A part is one finished batch, written under a temporary name and renamed (a
single PUT on object stores), so a kill -9 loses at most the batch in flight and never leaves
half a part. A worker reads every part at start and, before each lookup, only the parts it has
not seen yet (one listing), so it sees other workers' results as they land. The same key in two
parts (two workers, or a retry) is harmless: the later part wins, and both hold the same
fingerprint's output.

Why leases per image (not per batch): two workers form different batches from the same inputs,
so only a per-sha256 claim stops both from captioning one image. A lease is created with
exclusive create (O_EXCL; `xb` on fsspec, best effort where a store has no conditional write),
is removed when the worker's part has landed, and is broken by another worker when it expires
(`cache_lease_s`) or, on the same host, when its process is gone (a killed worker's images are
taken over at once).

An old cache's `captions.sqlite` (the previous format) is migrated into parts on first open and
renamed `captions.sqlite.migrated`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pinfeatures.buildfolder import file_sha256 as sha256_of_file
from pinfeatures.errors import ConfigError

OLD_CACHE_FILE = "captions.sqlite"
DEFAULT_LEASE_S = 600.0
DEFAULT_BLOB_MAX_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class CachedCaption:
    sha256: str
    caption: str | None
    status: str
    model: str
    detail: str | None
    created_at: float = 0.0


@dataclass(frozen=True)
class CachedFetch:
    """What fetching a URL gave last time: `ok` with the sha256 of the bytes, or a failure status."""

    url: str
    status: str
    sha256: str | None
    detail: str | None
    allow_private: bool
    """Fetched with allow_private_addresses on: not reused by a run that has it off."""


# -- where the files live --------------------------------------------------------------------


class _Store:
    """A local folder (plain os calls) or an fsspec filesystem, with the few operations the cache needs."""

    def __init__(self, location: str | Path):
        text = str(location)
        self.local = not isinstance(location, str) or "://" not in text or text.startswith("file://")
        if self.local:
            self.root = os.path.abspath(os.path.expanduser(text.removeprefix("file://")))
            self.fs = None
        else:
            try:
                import fsspec
            except ImportError:
                raise ConfigError(f"cache: {text} is a URL; install fsspec (and its filesystem package) to use it") from None
            try:
                self.fs, self.root = fsspec.core.url_to_fs(text)  # the root without a trailing '/'
            except (ImportError, ValueError) as exc:
                raise ConfigError(f"cache: cannot open {text}: {exc}") from None
        self.shown = text

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    def makedirs(self, path: str) -> None:
        if self.local:
            os.makedirs(path, exist_ok=True)
        else:
            self.fs.makedirs(path, exist_ok=True)

    def names(self, folder: str) -> list[str]:
        """File names in `folder` (not starting with '.', which marks temporaries); [] if it does not exist."""
        try:
            if self.local:
                names = [e.name for e in os.scandir(folder) if e.is_file()]
            else:
                names = [p.rstrip("/").rpartition("/")[2] for p in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []
        return sorted(n for n in names if not n.startswith("."))

    def read(self, path: str) -> bytes:
        if self.local:
            with open(path, "rb") as fh:
                return fh.read()
        return self.fs.cat_file(path)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write under a temporary name beside `path`, then rename: readers see all of it or nothing."""
        folder, name = path.rsplit("/", 1)
        tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        if self.local:
            os.makedirs(folder, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        else:
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` holding `data` unless it exists; True if this call created it."""
        folder = path.rsplit("/", 1)[0]
        if self.local:
            # written in full under a temporary name, then hard-linked into place (fails if the
            # name exists): no other worker ever reads a claimed-but-empty file
            os.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.{uuid.uuid4().hex}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.remove(tmp)
            return True
        try:
            with self.fs.open(path, "xb") as fh:
                fh.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError):  # no conditional create on this store: best effort
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def rename(self, src: str, dst: str) -> None:
        """Raises FileNotFoundError when `src` is gone (another worker moved it first)."""
        if self.local:
            os.rename(src, dst)
        else:
            self.fs.mv(src, dst)

    def delete(self, path: str) -> None:
        try:
            if self.local:
                os.remove(path)
            else:
                self.fs.rm_file(path)
        except FileNotFoundError:
            pass

    def exists(self, path: str) -> bool:
        return os.path.exists(path) if self.local else self.fs.exists(path)

    def files_with_size_mtime(self, folder: str) -> list[tuple[str, int, float]]:
        """(path, size, mtime) of every file under `folder`, recursively."""
        out: list[tuple[str, int, float]] = []
        if self.local:
            for dirpath, _dirs, files in os.walk(folder):
                for name in files:
                    if name.startswith("."):
                        continue
                    p = os.path.join(dirpath, name)
                    try:
                        st = os.stat(p)
                    except FileNotFoundError:
                        continue
                    out.append((p, st.st_size, st.st_mtime))
            return out
        if not self.fs.exists(folder):
            return out
        for p, info in self.fs.find(folder, detail=True).items():
            mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
            out.append((p, int(info.get("size") or 0), mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)))
        return out


# -- append-only tables ----------------------------------------------------------------------


class _Table:
    """One kind of row kept as Parquet parts in `<cache>/<name>/`, held in memory as key -> row."""

    def __init__(self, store: _Store, name: str, schema: dict[str, Any], n_key: int):
        self.store, self.name, self.schema, self.n_key = store, name, schema, n_key
        self.folder = store.path(name)
        self.rows: dict[tuple, tuple] = {}
        self.seen: set[str] = set()

    def refresh(self) -> None:
        """Read the parts not read yet (one listing when nothing is new)."""
        for name in self.store.names(self.folder):
            if name in self.seen or not name.endswith(".parquet"):
                continue
            try:
                data = self.store.read(f"{self.folder}/{name}")
            except FileNotFoundError:  # merged away by compact(): its rows are in the merged part
                continue
            self.seen.add(name)
            self._absorb(pl.read_parquet(io.BytesIO(data)).select(list(self.schema)).rows())

    def _absorb(self, rows: Iterable[tuple]) -> None:
        k = self.n_key
        for row in rows:
            self.rows[row[:k]] = row[k:]

    def append(self, rows: Sequence[tuple]) -> None:
        """Write `rows` as one new part (atomically) and keep them in memory."""
        if not rows:
            return
        name = part_name()
        frame = pl.DataFrame(list(rows), schema=self.schema, orient="row")
        buf = io.BytesIO()
        frame.write_parquet(buf)
        self.store.write_atomic(f"{self.folder}/{name}", buf.getvalue())
        self.seen.add(name)
        self._absorb(rows)


def part_name() -> str:
    """Sortable by time of writing, unique across hosts and processes."""
    return f"{time.time_ns():020d}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"


_CAPTIONS = {"sha256": pl.Utf8, "fingerprint": pl.Utf8, "caption": pl.Utf8, "status": pl.Utf8, "model": pl.Utf8,
             "detail": pl.Utf8, "created_at": pl.Float64}
_CLIP = {"sha256": pl.Utf8, "fingerprint": pl.Utf8, "clip_fp": pl.Utf8, "score": pl.Float64}
_FETCHES = {"url": pl.Utf8, "status": pl.Utf8, "sha256": pl.Utf8, "detail": pl.Utf8, "allow_private": pl.Boolean,
            "fetched_at": pl.Float64}
_FINGERPRINTS = {"fingerprint": pl.Utf8, "settings": pl.Utf8, "created_at": pl.Float64}
_FILE_HASHES = {"path": pl.Utf8, "size": pl.Int64, "mtime_ns": pl.Int64, "sha256": pl.Utf8}
TABLES = {"captions": (_CAPTIONS, 2), "clip_scores": (_CLIP, 3), "fetches": (_FETCHES, 1),
          "fingerprints": (_FINGERPRINTS, 1), "file_hashes": (_FILE_HASHES, 3)}
"""name -> (Parquet schema, number of leading key columns)."""


class CaptionCache:
    """A handle on a cache folder (path or fsspec URL). Safe to share between threads of one
    process (a lock guards the in-memory view) and between processes and machines (see the
    module docstring)."""

    def __init__(self, location: str | Path, *, lease_s: float = DEFAULT_LEASE_S,
                 blob_max_bytes: int = DEFAULT_BLOB_MAX_BYTES):
        self.store = _Store(location)
        self.lease_s = lease_s
        self.blob_max_bytes = blob_max_bytes
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.clock = time.time  # the leases' clock (tests set it)
        self._lock = threading.Lock()
        self._held: dict[str, set[str]] = {}  # fingerprint -> sha256s this handle holds leases on
        try:
            self.store.makedirs(self.store.root)
        except OSError as exc:
            raise ConfigError(f"cache: cannot create cache folder {self.store.shown}: {exc.strerror or exc}") from None
        self._tables = {name: _Table(self.store, name, schema, k) for name, (schema, k) in TABLES.items()}
        self._migrate_sqlite()
        try:
            for table in self._tables.values():
                table.refresh()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise ConfigError(f"cache: {self.store.shown} is not a usable caption cache ({exc})") from None

    def close(self) -> None:
        """Drop the leases still held (a run stopped by an error), trim the blob store to its bound."""
        for fingerprint, shas in list(self._held.items()):
            self.release(list(shas), fingerprint)
        self.trim_blobs()

    def __enter__(self) -> "CaptionCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def refresh(self) -> None:
        """See the parts other workers wrote since the last look."""
        with self._lock:
            for table in self._tables.values():
                table.refresh()

    # -- captions ----------------------------------------------------------------------

    def get_many(self, sha256s: Sequence[str], fingerprint: str, *, refresh: bool = True) -> dict[str, CachedCaption]:
        """Rows stored for these images under `fingerprint`, by sha256 (absent ones are left out)."""
        table = self._tables["captions"]
        with self._lock:
            if refresh:
                table.refresh()
            out = {}
            for sha in sha256s:
                row = table.rows.get((sha, fingerprint))
                if row is not None:
                    out[sha] = CachedCaption(sha, *row)
            return out

    def put_many(self, rows: Iterable[tuple[str, str, str | None, str, str, str | None]]) -> int:
        """Store (sha256, fingerprint, caption, status, model, detail) rows as ONE part."""
        now = time.time()
        data = [(*r, now) for r in rows]
        with self._lock:
            self._tables["captions"].append(data)
        return len(data)

    def count(self, fingerprint: str | None = None) -> int:
        table = self._tables["captions"]
        with self._lock:
            table.refresh()
            return sum(1 for (_sha, fp) in table.rows if fingerprint is None or fp == fingerprint)

    def all_rows(self, fingerprint: str) -> list[tuple[str, str | None, str, float]]:
        """(sha256, caption, status, created_at) for one fingerprint, sorted by sha256 (tests, tools)."""
        table = self._tables["captions"]
        with self._lock:
            table.refresh()
            return sorted((sha, r[0], r[1], r[4]) for (sha, fp), r in table.rows.items() if fp == fingerprint)

    # -- leases: one worker captions an image at a time ----------------------------------------

    def _lease_path(self, sha: str, fingerprint: str) -> str:
        return self.store.path("leases", fingerprint[:16], sha)

    def claim(self, sha256s: Sequence[str], fingerprint: str) -> set[str]:
        """Take a lease on each image that no live worker holds; the set of those taken."""
        body = json.dumps({"owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
                           "expires": self.clock() + self.lease_s}).encode()
        taken = set()
        for sha in dict.fromkeys(sha256s):
            path = self._lease_path(sha, fingerprint)
            if self.store.create_exclusive(path, body) or (self._break_if_stale(path) and self.store.create_exclusive(path, body)):
                taken.add(sha)
        self._held.setdefault(fingerprint, set()).update(taken)
        return taken

    def release(self, sha256s: Iterable[str], fingerprint: str) -> None:
        """Drop this worker's leases (after its part has landed)."""
        for sha in list(sha256s):
            self._held.get(fingerprint, set()).discard(sha)
            path = self._lease_path(sha, fingerprint)
            if self._lease_owner(path).get("owner") == self.owner:
                self.store.delete(path)

    def _lease_owner(self, path: str) -> dict:
        try:
            return json.loads(self.store.read(path))
        except FileNotFoundError:
            return {}
        except ValueError:  # half-written (a store without atomic create, owner killed mid-write): stale
            return {"expires": 0}

    def _break_if_stale(self, path: str) -> bool:
        """Remove a lease whose owner is gone (expired, or a dead process on this host); True if removed."""
        held = self._lease_owner(path)
        if not held:
            return True  # released meanwhile
        stale = held.get("expires", 0) < self.clock() or (held.get("host") == socket.gethostname() and not _alive(held.get("pid")))
        if not stale:
            return False
        tomb = f"{path.rsplit('/', 1)[0]}/.stale-{uuid.uuid4().hex}"
        try:
            self.store.rename(path, tomb)  # one breaker wins the rename
        except FileNotFoundError:
            return False
        if self._lease_owner(tomb).get("owner") != held.get("owner"):
            # another breaker replaced the stale lease between our read and our rename: put theirs back
            if not self.store.exists(path):
                self.store.rename(tomb, path)
            return False
        self.store.delete(tomb)
        return True

    # -- CLIP scores ---------------------------------------------------------------------

    def get_clip_scores(self, sha256s: Sequence[str], fingerprint: str, clip_fp: str) -> dict[str, float]:
        table = self._tables["clip_scores"]
        with self._lock:
            table.refresh()
            return {sha: table.rows[(sha, fingerprint, clip_fp)][0] for sha in sha256s if (sha, fingerprint, clip_fp) in table.rows}

    def put_clip_scores(self, rows: Iterable[tuple[str, str, str, float]]) -> None:
        with self._lock:
            self._tables["clip_scores"].append(list(rows))

    def clip_score_rows(self) -> list[tuple[str, str, str, float]]:
        """(sha256, fingerprint, clip_fp, score) of every stored score (tests, tools)."""
        with self._lock:
            return sorted((*k, v[0]) for k, v in self._tables["clip_scores"].rows.items())

    # -- URL fetches and their bytes -----------------------------------------------------

    def get_fetches(self, urls: Sequence[str]) -> dict[str, CachedFetch]:
        table = self._tables["fetches"]
        with self._lock:
            table.refresh()
            out = {}
            for url in urls:
                row = table.rows.get((url,))
                if row is not None:
                    out[url] = CachedFetch(url, *row[:4])
            return out

    def put_fetches(self, rows: Iterable[tuple[str, str, str | None, str | None, bool]]) -> None:
        """Store (url, status, sha256, detail, allow_private) rows as one part."""
        now = time.time()
        with self._lock:
            self._tables["fetches"].append([(*r, now) for r in rows])

    def _blob_path(self, sha: str) -> str:
        return self.store.path("blobs", sha[:2], sha)

    def put_blob(self, sha: str, data: bytes) -> None:
        """Keep fetched bytes by their sha256 (once; written atomically)."""
        if len(data) > self.blob_max_bytes:
            return
        path = self._blob_path(sha)
        if not self.store.exists(path):
            self.store.write_atomic(path, data)

    def get_blob(self, sha: str) -> bytes | None:
        """The stored bytes of `sha`, or None (never stored, trimmed, or damaged)."""
        path = self._blob_path(sha)
        try:
            data = self.store.read(path)
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha:
            return None
        if self.store.local:
            try:
                os.utime(path)  # recently used: trimmed last
            except OSError:
                pass
        return data

    def trim_blobs(self) -> int:
        """Delete the oldest blobs until they take at most blob_max_bytes; the number deleted."""
        files = self.store.files_with_size_mtime(self.store.path("blobs"))
        total = sum(size for _, size, _ in files)
        deleted = 0
        for path, size, _ in sorted(files, key=lambda f: f[2]):
            if total <= self.blob_max_bytes:
                break
            self.store.delete(path)
            total -= size
            deleted += 1
        return deleted

    # -- fingerprints and file hashes ------------------------------------------------------

    def remember_fingerprint(self, fingerprint: str, settings_json: str) -> None:
        with self._lock:
            table = self._tables["fingerprints"]
            if (fingerprint,) not in table.rows:
                table.append([(fingerprint, settings_json, time.time())])

    def file_sha256(self, path: str | Path) -> str:
        """sha256 of a file's bytes, memoised by (absolute path, size, mtime)."""
        p = Path(path).resolve()
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns)
        table = self._tables["file_hashes"]
        with self._lock:
            row = table.rows.get(key)
        if row:
            return row[0]
        digest = sha256_of_file(p)
        with self._lock:
            table.append([(*key, digest)])
        return digest

    # -- the old format and compaction -------------------------------------------------------

    def _migrate_sqlite(self) -> None:
        """Copy a previous-format `captions.sqlite` into parts, then rename it `.migrated`.

        A kill mid-way leaves the file in place and the next open migrates it again: the rows
        land twice, which the key makes harmless."""
        if not self.store.local:
            return
        old = os.path.join(self.store.root, OLD_CACHE_FILE)
        if not os.path.exists(old):
            return
        try:
            db = sqlite3.connect(f"file:{old}?mode=ro", uri=True)
            try:  # the old tables have the parts' columns (fetches were not cached then)
                data = {name: db.execute(f"SELECT {', '.join(TABLES[name][0])} FROM {name}").fetchall()
                        for name in ("captions", "clip_scores", "fingerprints", "file_hashes")}
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cache: {old} is not a usable caption cache ({exc})") from None
        for name, rows in data.items():
            self._tables[name].append(rows)
        try:
            os.replace(old, old + ".migrated")
        except FileNotFoundError:  # another worker migrated it at the same time
            pass


def compact(location: str | Path) -> dict[str, int]:
    """Merge each table's parts into one (latest row per key wins), then delete the merged parts.

    Safe while workers run: the merged part lands (atomically) before any part is deleted, and a
    reader that lists a part and then finds it gone skips it (its rows are in the merged part).
    Returns {table: number of parts merged}.
    """
    store = _Store(location)
    merged: dict[str, int] = {}
    for name, (schema, k) in TABLES.items():
        table = _Table(store, name, schema, k)
        table.refresh()
        parts = sorted(table.seen)
        if len(parts) < 2:
            merged[name] = 0
            continue
        table.append([key + row for key, row in table.rows.items()])  # the merged part (not in `parts`)
        for part in parts:
            store.delete(f"{table.folder}/{part}")
        merged[name] = len(parts)
    return merged


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


