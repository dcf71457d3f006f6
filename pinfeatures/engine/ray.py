"""The Ray engine: shard tasks as Ray tasks, on a local Ray or a cluster (`--ray-address`).

Each task declares one CPU and the memory its shard needs (an estimate from the shard's input
bytes, capped at what the cluster has), so Ray never packs more shards onto a node than fit.
Tasks get the same plain functions and picklable arguments as the local engine; the task's
Polars and DuckDB use one thread each (its CPU). A task that fails raises here; a worker that
dies (killed, out of memory) is retried by Ray (`max_retries`), and shard functions only write
their own files, so a retry is safe.

Ray is the `pinfeatures[ray]` extra. On a cluster every node needs pinfeatures installed and the
input and work folders on a shared filesystem (the README shows the commands).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from pinfeatures.errors import ConfigError

WORKER_ENV = {"PINFEATURES_WORKER_THREADS": "1", "POLARS_MAX_THREADS": "1"}


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'pinfeatures[ray]'") from None
    return ray


class RayEngine:
    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        ray = _ray()
        self.started = not ray.is_initialized()
        if self.started:
            env = {k: v for k, v in os.environ.items() if k in ("PYTHONPATH", "HF_HUB_OFFLINE")}
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, runtime_env={"env_vars": {**env, **WORKER_ENV}})

    def concurrency(self, n_tasks: int) -> int:
        # one CPU per task: a node runs as many shard tasks at once as it has CPUs
        cpus = [int(node["Resources"].get("CPU", 1)) for node in _ray().nodes() if node.get("Alive")]
        return max(1, min(n_tasks, max(cpus, default=1)))

    def map(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, memory_bytes: int | None = None) -> list[Any]:
        ray = _ray()
        options: dict[str, Any] = {"num_cpus": 1, "max_retries": 2}
        if memory_bytes:
            free = ray.available_resources().get("memory", 0)
            options["memory"] = int(min(memory_bytes, free / max(1, min(len(tasks), ray.available_resources().get("CPU", 1)))))
        remote = ray.remote(**options)(fn)
        return ray.get([remote.remote(t) for t in tasks])

    def close(self) -> None:
        if self.started:
            _ray().shutdown()
