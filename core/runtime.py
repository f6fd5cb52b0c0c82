"""One policy for where and how torch runs: device, precision, torch threads, workers, batch size.

Prediction, training, the CRF, vectorizing and the Dask block tasks all resolve their settings here,
so a setting means the same thing everywhere:

- ``device``: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
- ``precision``: ``auto`` (fp32 on the CPU; bf16 autocast on CUDA GPUs that support it, else fp16),
  ``fp32``, ``bf16`` or ``fp16`` (CUDA only).
- threads: torch's thread count is per thread. :func:`resolve_workers` splits the usable cores
  between tile workers; :func:`all_cores` gives one step (the CRF) every core for its duration.
- counts (batch size, workers): a whole number >= 1 or ``auto``.
- waiting: :func:`passive_wait_policy` makes torch's OpenMP threads sleep instead of spinning while
  they wait for each other (``OMP_WAIT_POLICY=PASSIVE``). With another program holding a core, the
  spinning threads of torch's default made the dense CRF 2.7x slower (benchmarks/busy_cpu.py).
  ``segdeep`` (the command), the napari plugin and ``local:N`` Dask workers set it; in a script, call
  it before the first ``import torch`` (or export ``OMP_WAIT_POLICY=PASSIVE`` in the shell).

torch is imported inside the functions that need it, so the torch-free parts of segdeep (the CLI's
``--help``, evaluation, vectorizing) can use this module without loading it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

from .errors import SegdeepError

if TYPE_CHECKING:
    import torch

__all__ = [
    "PRECISIONS",
    "all_cores",
    "autocast_dtype",
    "drain",
    "available_cores",
    "parse_count",
    "passive_wait_policy",
    "peak_rss_mb",
    "resolve_batch_size",
    "resolve_device",
    "resolve_precision",
    "resolve_threads",
    "resolve_workers",
]

#: Precision names accepted everywhere.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def passive_wait_policy() -> bool:
    """Ask torch's OpenMP runtime to let waiting threads sleep (``OMP_WAIT_POLICY=PASSIVE``) unless
    the user chose a policy. The runtime reads it once, when torch is first imported: True when the
    policy is in place for this process (set now, or chosen by the user), False when torch was
    already imported without it (then it takes effect only in new processes)."""
    if "OMP_WAIT_POLICY" in os.environ:
        return True
    if "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def resolve_device(device: str | None = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` are checked
    (a one-line :class:`SegdeepError` for an unknown name or a GPU that is not there)."""
    import torch

    name = str(device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise SegdeepError(f"device {device!r}: no CUDA GPU is available here; use --device cpu or auto")
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise SegdeepError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return torch.device(name)
    raise SegdeepError(f"device {device!r} is not known; use auto, cpu, cuda or cuda:N")


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """``auto`` -> fp32 on the CPU, bf16 (or fp16 where bf16 is unsupported) autocast on CUDA;
    ``fp16`` is refused on the CPU."""
    name = str(precision or "auto").strip().lower()
    if name not in PRECISIONS:
        raise SegdeepError(f"precision {precision!r} is not known; use auto, fp32, bf16 or fp16")
    if name == "auto":
        if device.type != "cuda":
            return "fp32"
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if name == "fp16" and device.type != "cuda":
        raise SegdeepError("precision fp16 needs a CUDA device; use fp32 or bf16 on the CPU")
    return name


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The ``torch.autocast`` dtype of a resolved precision (None for fp32: no autocast)."""
    import torch

    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def parse_count(value: int | str, what: str) -> int | None:
    """None for ``auto``, else ``value`` as a whole number >= 1 (a one-line error naming ``what``)."""
    if isinstance(value, bool):
        value = str(value)
    if str(value).strip().lower() == "auto":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or str(n) != str(value).strip():
        raise SegdeepError(f"{what} {value!r} must be a whole number >= 1 or 'auto'")
    return n


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """Torch uses every available core in this thread for the duration (the thread count is a
    per-thread setting: threads other than the main one start with 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(available_cores())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_batch_size(batch_size: int | str, device: torch.device, tile_size: int) -> int:
    """Tiles per forward pass. ``auto``: 1 on CPU (larger batches were no faster per pixel here),
    on CUDA about 8 tiles of 512 px scaled by tile area (``tile_size`` in pixels)."""
    n = parse_count(batch_size, "batch size")
    if n is not None:
        return n
    if device.type != "cuda":
        return 1
    return int(max(1, min(64, 8 * (512 / tile_size) ** 2)))


def resolve_workers(workers: int | str, device: torch.device) -> tuple[int, int]:
    """(tiles computed at once, torch threads each) on the CPU; ``(0, 0)`` on CUDA (batches run in
    the calling thread, one after the other).

    ``auto``: 2 workers with half the cores each when there are 2 or more cores. Measured on a
    2-core machine: the model alone runs as fast either way (one tile on 2 threads or 2 tiles on 1
    thread each, within 7 %), but inside ``predict``, where reading, blending and writing share the
    cores, one worker on 2 threads took 1.6x as long (11.4 s against 7.0 s on the 4096 px sample
    scene): OpenMP threads wait for each other at every layer, and each wait is as long as the
    slowest thread's time off the core. A number N: N workers with ``cores // N`` threads each (at
    least 1).
    """
    n = parse_count(workers, "workers")
    if device.type != "cpu":
        return 0, 0
    cores = available_cores()
    n = n or (2 if cores >= 2 else 1)
    return n, max(1, cores // n)


def resolve_threads(workers: int | str, jobs: int) -> int:
    """Threads for ``jobs`` independent torch-free jobs (e.g. polygonizing blocks): a whole number
    >= 1, or ``auto`` = one per usable core, at most one per job."""
    n = parse_count(workers, "workers")
    return n if n is not None else max(1, min(available_cores(), jobs))


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def drain(job: Generator, callback: Callable[[object], None] | None = None):
    """Run a job generator (prediction, training, refinement, one block) to the end and return its
    result (the generator's return value); ``callback(event)`` sees each event it yields."""
    while True:
        try:
            event = next(job)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)
