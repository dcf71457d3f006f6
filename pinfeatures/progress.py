"""Progress on long work: one line per stage on stderr, and tqdm bars for long loops; --quiet silences both."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator


def warn(message: str) -> None:
    """A warning on stderr, shown even with --quiet: something was read differently than written."""
    print(f"pinfeatures: warning: {message}", file=sys.stderr, flush=True)


class Progress:
    def __init__(self, quiet: bool = False, prefix: str = "pinfeatures"):
        self.quiet = quiet
        self.prefix = prefix
        self.timings: dict[str, float] = {}

    def warn(self, message: str) -> None:
        """A warning: printed on stderr even with --quiet (a warning is not progress)."""
        print(f"{self.prefix}: warning: {message}", file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(f"[{self.prefix}] {message}", file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str, what: str = "") -> Iterator[None]:
        """Time a stage (kept in .timings) and report its start and end."""
        self.say(f"{name}: {what or 'running'} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[name] = self.timings.get(name, 0.0) + elapsed
            self.say(f"{name}: done in {elapsed:.2f}s")
