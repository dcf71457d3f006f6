"""The caption cache: one SQLite file, rows keyed by (image sha256, captioner fingerprint).

What goes in: batches of results (sha256, fingerprint, caption, status, model, seconds).
What comes out: for a list of sha256 under one fingerprint, the rows already stored.

Why SQLite: the cache must survive a kill at any instant and be shared by two runs at
once. SQLite in WAL mode gives both: each batch is one transaction (a kill loses at
most the batch in flight, never half a row), readers never block the writer, and two
writers queue on the lock (busy timeout) instead of corrupting the file. Rows are
written with INSERT OR REPLACE, so two runs that caption the same image both succeed
and the later row wins (the captions are the same fingerprint's output anyway).

The cache also remembers the sha256 of large weights files by (path, size, mtime), so a
fingerprint that includes a multi-GB weights hash is computed once, not every run.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


from pinfeatures.errors import ConfigError

CACHE_FILE = "captions.sqlite"
SCHEMA_VERSION = 1

# Kept here rather than in sql/: this is SQLite DDL for the cache file, not a DuckDB query.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS captions (
    sha256      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    caption     TEXT,
    status      TEXT NOT NULL,
    model       TEXT NOT NULL,
    detail      TEXT,
    created_at  REAL NOT NULL,
    PRIMARY KEY (sha256, fingerprint)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS clip_scores (
    sha256      TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    clip_fp     TEXT NOT NULL,
    score       REAL NOT NULL,
    PRIMARY KEY (sha256, fingerprint, clip_fp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint TEXT PRIMARY KEY,
    settings    TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path     TEXT NOT NULL,
    size     INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256   TEXT NOT NULL,
    PRIMARY KEY (path, size, mtime_ns)
);
"""

# SQLite caps the number of host parameters per statement; look rows up in chunks below it.
_CHUNK = 900


@dataclass(frozen=True)
class CachedCaption:
    sha256: str
    caption: str | None
    status: str
    model: str
    detail: str | None


class CaptionCache:
    """A handle on `<cache_dir>/captions.sqlite`. Safe to share between threads of one process
    (a lock serialises use of the connection) and between processes (SQLite's own locking)."""

    def __init__(self, cache_dir: str | Path, *, busy_timeout_s: float = 60.0):
        self.dir = Path(cache_dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cache: cannot create cache folder {self.dir}: {exc.strerror}") from None
        self.path = self.dir / CACHE_FILE
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                str(self.path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a committed batch survives a process kill (only an OS crash
            # can lose the last transactions), and commits stay cheap.
            self._db.execute("PRAGMA synchronous = NORMAL")
            if self._db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                # only a new file is written to here; opening an existing cache takes no write lock
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"cache: {self.path} is not a usable caption cache ({exc})") from None

    # -- transactions ----------------------------------------------------------------

    def _tx(self):
        return _Tx(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "CaptionCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- captions ----------------------------------------------------------------------

    def get_many(self, sha256s: Sequence[str], fingerprint: str) -> dict[str, CachedCaption]:
        """Rows stored for these images under `fingerprint`, by sha256 (absent ones are left out)."""
        rows = self._select_in(
            "SELECT sha256, caption, status, model, detail FROM captions WHERE fingerprint = ? AND sha256 IN ({marks})",
            [fingerprint],
            sha256s,
        )
        return {sha: CachedCaption(sha, caption, status, model, detail) for sha, caption, status, model, detail in rows}

    def _select_in(self, sql: str, params: list, keys: Sequence[str]) -> list[tuple]:
        """Run `sql` (with `{marks}` for the IN list) over the distinct keys, _CHUNK at a time:
        SQLite caps the number of bound parameters per statement."""
        uniq = list(dict.fromkeys(keys))
        out: list[tuple] = []
        with self._lock:
            for i in range(0, len(uniq), _CHUNK):
                chunk = uniq[i : i + _CHUNK]
                out.extend(self._db.execute(sql.format(marks=",".join("?" * len(chunk))), [*params, *chunk]).fetchall())
        return out

    def put_many(self, rows: Iterable[tuple[str, str, str | None, str, str, str | None]]) -> int:
        """Store (sha256, fingerprint, caption, status, model, detail) rows in ONE transaction."""
        now = time.time()
        data = [(*r, now) for r in rows]
        if not data:
            return 0
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO captions (sha256, fingerprint, caption, status, model, detail, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                data,
            )
        return len(data)

    def count(self, fingerprint: str | None = None) -> int:
        with self._lock:
            if fingerprint is None:
                return self._db.execute("SELECT count(*) FROM captions").fetchone()[0]
            return self._db.execute("SELECT count(*) FROM captions WHERE fingerprint = ?", [fingerprint]).fetchone()[0]

    def all_rows(self, fingerprint: str) -> list[tuple[str, str | None, str, float]]:
        """(sha256, caption, status, created_at) for one fingerprint, sorted by sha256 (tests, tools)."""
        with self._lock:
            return self._db.execute(
                "SELECT sha256, caption, status, created_at FROM captions WHERE fingerprint = ? ORDER BY sha256",
                [fingerprint],
            ).fetchall()

    # -- CLIP scores ---------------------------------------------------------------------

    def get_clip_scores(self, sha256s: Sequence[str], fingerprint: str, clip_fp: str) -> dict[str, float]:
        rows = self._select_in(
            "SELECT sha256, score FROM clip_scores WHERE fingerprint = ? AND clip_fp = ? AND sha256 IN ({marks})",
            [fingerprint, clip_fp],
            sha256s,
        )
        return dict(rows)

    def put_clip_scores(self, rows: Iterable[tuple[str, str, str, float]]) -> None:
        data = list(rows)
        if not data:
            return
        with self._lock, self._tx():
            self._db.executemany(
                "INSERT OR REPLACE INTO clip_scores (sha256, fingerprint, clip_fp, score) VALUES (?, ?, ?, ?)", data
            )

    # -- fingerprints and file hashes ------------------------------------------------------

    def remember_fingerprint(self, fingerprint: str, settings_json: str) -> None:
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR IGNORE INTO fingerprints (fingerprint, settings, created_at) VALUES (?, ?, ?)",
                [fingerprint, settings_json, time.time()],
            )

    def file_sha256(self, path: str | Path) -> str:
        """sha256 of a file's bytes, memoised by (absolute path, size, mtime)."""
        p = Path(path).resolve()
        st = p.stat()
        with self._lock:
            row = self._db.execute(
                "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
                [str(p), st.st_size, st.st_mtime_ns],
            ).fetchone()
        if row:
            return row[0]
        digest = hash_file(p)
        with self._lock, self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO file_hashes (path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                [str(p), st.st_size, st.st_mtime_ns, digest],
            )
        return digest


def hash_file(path: str | Path, chunk: int = 4 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error). IMMEDIATE takes the write lock up front,
    so two writers wait for each other (busy timeout) rather than fail mid-transaction."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")
        return False

