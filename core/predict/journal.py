"""The resume journal of a prediction run: which blocks are finished, and their results.

Each finished block's labels (and probabilities, when asked for) are saved as ``.npy`` files in
``<out_dir>/.segdeep-parts/`` under a temporary name and renamed; only then is the block added to
``<out_dir>/.segdeep-journal.json`` (also rewritten through a temporary name). A run killed at any
moment (even ``kill -9``) therefore leaves a journal whose blocks are all complete on disk. The
journal stores a fingerprint of everything that decides the labels (image, model weights and card,
tile/block geometry, bands, region, CRF); resuming with a different fingerprint is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..errors import SegdeepError

JOURNAL_NAME = ".segdeep-journal.json"
PARTS_NAME = ".segdeep-parts"


def model_digest(model) -> str:
    """A short hash of a torch model's parameters and buffers (names, shapes, values)."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    """Finished blocks of a run in ``out_dir``; see the module notes."""

    def __init__(self, out_dir: str | Path, fingerprint: dict, resume: bool) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / JOURNAL_NAME
        self.parts = self.out_dir / PARTS_NAME
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalised (tuples -> lists)
        self.done: set[int] = set()
        if resume and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SegdeepError(f"{self.path}: unreadable resume journal ({exc}); run without --resume") from None
            if data.get("fingerprint") != self.fingerprint:
                diff = sorted(k for k in set(self.fingerprint) | set(data.get("fingerprint", {}))
                              if self.fingerprint.get(k) != data.get("fingerprint", {}).get(k))
                raise SegdeepError(f"{self.path}: the interrupted run used different settings ({', '.join(diff)}); "
                                   "run without --resume to start again, or use the same settings")
            self.done = {int(i) for i in data.get("done", []) if self.part_path(int(i), "labels").exists()}
        else:
            self.discard()
        self.parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def part_path(self, index: int, kind: str) -> Path:
        return self.parts / f"{kind}_{index:06d}.npy"

    def _save(self) -> None:
        _write_json_atomic(self.path, {"fingerprint": self.fingerprint, "done": sorted(self.done)})

    def finish_block(self, index: int, labels: np.ndarray, probabilities: np.ndarray | None = None) -> None:
        """Save a block's results, then record it as finished."""
        items = [("labels", labels)] + ([("probabilities", probabilities)] if probabilities is not None else [])
        for kind, array in items:
            final = self.part_path(index, kind)
            tmp = final.with_name(final.stem + ".tmp.npy")
            with open(tmp, "wb") as f:
                np.save(f, array)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        self.done.add(index)
        self._save()

    def load(self, index: int, kind: str) -> np.ndarray:
        return np.load(self.part_path(index, kind))

    def discard(self) -> None:
        """Remove the journal and every saved block."""
        shutil.rmtree(self.parts, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
