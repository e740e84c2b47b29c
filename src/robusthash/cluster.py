"""Hashing on a Dask cluster: the executor that ``--dask`` names.

Registering and benchmarking already hand their hashing to a
:class:`concurrent.futures.Executor` (a process pool on one machine). A Dask client
offers the same interface, so the same submit / as-completed code runs on a cluster:
``--dask tcp://scheduler:8786`` connects to one, ``--dask local`` starts a
:class:`~distributed.LocalCluster` of worker processes on this machine.

What the cluster guarantees, and what the callers add:

* a task whose worker dies is run again on another worker (the scheduler does this,
  up to ``distributed.scheduler.allowed-failures`` times); a task that raises is retried
  ``retries`` times;
* each future resolves once, and only the client writes to the database, so a task run
  twice cannot register an image twice (images are unique by digest in any case).

Dask is an optional dependency (``pip install 'robusthash[distributed]'``). Without a
cluster, work runs on this machine's :func:`usable_cores`.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

LOCAL = "local"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS tells it, which a
    container's limit narrows), at least 1."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@dataclass(frozen=True)
class ClusterConfig:
    """Where to hash. ``address``: ``"local"`` or a scheduler address (``tcp://host:8786``).
    ``workers``: worker processes of a local cluster (default: one per core); ignored for a
    remote scheduler. ``retries``: extra attempts of a task that raised. ``timeout``: seconds
    to wait for the scheduler."""

    address: str = LOCAL
    workers: int | None = None
    retries: int = 3
    timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.address != LOCAL and "://" not in self.address:
            raise ValueError(f"--dask must be 'local' or a scheduler address such as tcp://host:8786, "
                             f"not {self.address!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"a cluster needs at least one worker, not {self.workers}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, not {self.retries}")


def _distributed():
    try:
        import distributed
    except ImportError:
        raise RuntimeError("--dask needs Dask: pip install 'robusthash[distributed]'") from None
    return distributed


@contextmanager
def dask_executor(config: ClusterConfig) -> Iterator[Executor]:
    """A :class:`concurrent.futures.Executor` whose tasks run on the Dask cluster ``config`` names."""
    distributed = _distributed()
    cluster = None
    if config.address == LOCAL:
        # One single-threaded process per core: hashing is CPU-bound Python and numpy, and
        # the GIL would serialise threads. The workers' BLAS and onnxruntime get one thread
        # each, as the benchmark's process pool does.
        cluster = distributed.LocalCluster(
            n_workers=config.workers or os.cpu_count() or 1, threads_per_worker=1, processes=True,
            dashboard_address=None, env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                                         "MKL_NUM_THREADS": "1"})
        address = cluster.scheduler_address
    else:
        address = config.address
    try:
        try:
            client = distributed.Client(address, timeout=config.timeout)
        except OSError as exc:
            raise RuntimeError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        try:
            yield client.get_executor(retries=config.retries, pure=False)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


__all__ = ["ClusterConfig", "LOCAL", "dask_executor"]
