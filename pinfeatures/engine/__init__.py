"""Engines that run a build's shard functions: `local` (this machine's processes) and `ray`.

Both take the same plain, picklable task functions (pinfeatures.build.shard) and return their
results in task order; `engine_for(cfg)` picks one from the build settings.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence


class Engine(Protocol):
    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, memory_bytes: int | None = None) -> list[Any]:
        """fn(task) for every task, results in task order; an exception in one task is raised here."""

    def concurrency(self, n_tasks: int) -> int:
        """How many of `n_tasks` run at once on one machine (they share its memory)."""

    def close(self) -> None: ...


def engine_for(cfg: Any) -> Engine:
    if cfg.engine == "ray":
        from pinfeatures.engine.ray import RayEngine

        return RayEngine(cfg.ray_address)
    from pinfeatures.engine.local import LocalEngine

    return LocalEngine(cfg.workers or None)
