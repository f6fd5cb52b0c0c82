"""Connecting to a Dask cluster and running ordered task streams on it.

``scheduler`` is ``"tcp://host:8786"`` (an existing cluster), ``"local:N"`` (a ``LocalCluster`` of N
single-threaded worker processes on loopback) or a ``distributed.Client``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import SegdeepError
from ..predict.events import ClusterReady
from ..predict.journal import shared_path
from . import tasks

__all__ = ["cluster_map_blocks", "connect", "cluster_ready", "ordered", "require_dask", "window"]


def require_dask():
    """The ``distributed`` module, or a one-line error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise SegdeepError("--scheduler needs dask.distributed: pip install 'napari-segdeep[dask]'") from None
    return distributed


@contextlib.contextmanager
def connect(scheduler) -> Iterator:
    """A ``distributed.Client`` for ``scheduler`` (see the module notes); a local cluster is closed on exit."""
    distributed = require_dask()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    text = str(scheduler).strip()
    if text.startswith("local:"):
        try:
            n = int(text[6:])
        except ValueError:
            n = 0
        if n < 1:
            raise SegdeepError(f"scheduler {scheduler!r}: expected local:N with N >= 1 worker processes")
        import dask

        # Dask's default MALLOC_TRIM_THRESHOLD_ for workers fixes glibc's mmap threshold at 128 KiB:
        # every tensor is then mmapped and unmapped (6x the page faults, 1.9x the CPU of a forward
        # pass here; benchmarks/README.md). Workers keep glibc's adaptive default instead. The
        # workers' statistical profiler (a stack sample every 10 ms, for the dashboard's Profile
        # page) is off: it cost ~5 % of the CPU a block task uses (benchmarks/README.md).
        # OpenMP threads sleep while they wait (segdeep.runtime.passive_wait_policy).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                              "distributed.nanny.pre-spawn-environ.OMP_WAIT_POLICY": "PASSIVE",
                              "distributed.worker.profile.enabled": False}):
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               host="127.0.0.1", dashboard_address=":0", silence_logs=40)
        try:
            with distributed.Client(cluster) as client:
                client.register_plugin(tasks.TorchThreads(1))
                yield client
        finally:
            cluster.close()
        return
    if "://" not in text and ":" not in text:
        raise SegdeepError(f"scheduler {scheduler!r}: expected tcp://host:port (a Dask scheduler) or local:N")
    try:
        client = distributed.Client(text, timeout="20s")
    except (OSError, TimeoutError) as exc:
        raise SegdeepError(f"scheduler {text}: cannot connect ({exc}); is a Dask scheduler running there?") from None
    with client:
        yield client


def cluster_ready(client) -> ClusterReady:
    """What the client knows of the cluster: scheduler address, dashboard link, worker count."""
    info = client.scheduler_info()
    link = client.dashboard_link if "dashboard" in info.get("services", {}) else None
    return ClusterReady(info.get("address", ""), link, len(info.get("workers", {})))


def ordered(client, fn, args: list[tuple], *, window: int, retries: int, prefix: str) -> Iterator:
    """Results of ``fn(*a)`` for each ``a`` of ``args`` in order, at most ``window`` tasks in flight."""
    import collections

    pending: collections.deque = collections.deque()
    todo = iter(enumerate(args))
    try:
        while True:
            for i, a in todo:
                pending.append(client.submit(fn, *a, key=f"{prefix}-{i}", retries=retries))
                if len(pending) >= window:
                    break
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        if pending:
            client.cancel(list(pending))


def window(client) -> int:
    """Tasks to keep in flight on ``client``: 4 per worker thread."""
    return 4 * max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))


def cluster_map_blocks(client, retries: int = 3):
    """A ``map_blocks`` for :func:`segdeep.export.vectorize.iter_polygons` that runs the blocks on ``client``
    (paths made absolute so every worker can read them), results in block order."""
    import uuid

    def map_blocks(func, args_list):
        args_list = [(shared_path(args[0]), *args[1:]) for args in args_list]
        return ordered(client, func, args_list, window=window(client), retries=retries,
                        prefix=f"segdeep-polygons-{uuid.uuid4().hex[:8]}")

    return map_blocks
