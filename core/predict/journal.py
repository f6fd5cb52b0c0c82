"""The resume journal of a prediction run: which blocks are finished, and their results.

Each finished block's labels (and probabilities, when asked for) are saved as ``.npy`` files in
``<out_dir>/.segdeep-parts/`` under a temporary name and renamed (a block that is all nodata is
recorded as empty and costs no disk); only then is the block added to
``<out_dir>/.segdeep-journal.json`` (also rewritten through a temporary name). A run killed at any
moment (even ``kill -9``) therefore leaves a journal whose blocks are all complete on disk. The
journal stores the run's :func:`run_fingerprint` (everything that decides a finished block's
results); resuming with a different fingerprint is refused (:func:`check_same_run`). A run on a Dask
cluster (:mod:`segdeep.distributed.run`) uses the same fingerprint and the same check.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..classes import NODATA_LABEL
from ..errors import SegdeepError
from ..io.atomic import write_json_atomic

if TYPE_CHECKING:
    from .config import PredictConfig
    from .plan import RunPlan

JOURNAL_NAME = ".segdeep-journal.json"
PARTS_NAME = ".segdeep-parts"
_EMPTY = "empty:"  # digest of a part that was all nodata (no file), followed by its shape


def scratch_bytes(pixels: int, num_classes: int, probabilities: bool) -> int:
    """Most bytes the resume parts of ``pixels`` output pixels can take (1 byte a pixel of labels,
    ``num_classes`` more with probabilities; empty blocks take none)."""
    return int(pixels) * (1 + (int(num_classes) if probabilities else 0))


def check_free_space(folder: str | Path, need: int, what: str = "the run's scratch (resume parts)") -> None:
    """One-line :class:`SegdeepError` naming ``folder`` when its disk has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise SegdeepError(f"{folder}: {what} may need up to {need / 2**30:.2f} GB but the disk has "
                           f"{free / 2**30:.2f} GB free; free some space, choose another --out or a smaller "
                           "--window")


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


def file_digest(path: str | Path) -> str:
    """A short hash of a file's bytes (read in 4 MB pieces)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def shared_path(path: str | Path) -> str:
    """``path`` as workers see it: absolute for a file, unchanged for a URL or GDAL virtual path."""
    text = str(path)
    return text if "://" in text or text.startswith("/vsi") else str(Path(text).resolve())


def file_identity(path: str | Path | None) -> dict | None:
    """Where a file is, its size in bytes and its modification time (ns); None for no file. A URL or
    GDAL virtual path is identified by its text only."""
    if path is None:
        return None
    where = shared_path(path)
    try:
        st = os.stat(where)
    except OSError:
        return {"path": where}
    return {"path": where, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def model_identity(config: PredictConfig, model=None) -> str:
    """The digest of the model bundle file (weights and card) or, for an in-memory model, of its
    parameters and buffers (:func:`model_digest`)."""
    if config.bundle is not None:
        return file_digest(config.bundle)
    return model_digest(model if model is not None else config.model)


def _card_fields(card) -> dict:
    classes = [c.to_dict() if hasattr(c, "to_dict") else str(c) for c in card.classes]
    return {"architecture": getattr(card, "architecture", None), "kwargs": getattr(card, "kwargs", None),
            "classes": classes, "bands": list(card.bands), "mean": list(getattr(card, "mean", []) or []),
            "std": list(getattr(card, "std", []) or []), "scale": getattr(card, "scale", None),
            "ignore_index": int(getattr(card, "ignore_index", 255))}


def run_fingerprint(config: PredictConfig, plan: RunPlan, info, card, *, model: str, device: str,
                    precision: str) -> dict:
    """What decides a finished block's saved results: resuming is allowed only when it is unchanged.

    The one fingerprint of a prediction run, in this process and on a Dask cluster. ``model`` is
    :func:`model_identity`; ``device`` and ``precision`` are the resolved ones (on a cluster, as the
    workers resolved them). It covers:

    - ``image``: the raster's path, size in bytes and modification time, and its width, height and
      band count. Not a hash of its pixels: that would read a raster of many GB once more.
    - ``model``: the bundle file's digest (weights and card) or the in-memory model's weights;
      ``card``: the classes, bands, normalisation (mean, std, scale), architecture and ignore index
      (an in-memory model's card is not in the digest).
    - ``bands`` fed to the model, ``tile_size``, ``overlap`` (pixels, after defaults), ``block_size``
      (after snapping: it decides which block is which in the journal), ``region`` (the pixel window
      segmented), ``crf`` (every setting), ``probabilities`` (saved per block when asked for),
      ``test_time``: the test-time scales and flip, only when other than the plain forward pass (so
      that journals written before the option existed still resume).
    - ``truth``: its path, size and modification time, with the card's ignore index. On a cluster
      each block's part carries its confusion matrix against the truth; in this process the report
      is recomputed from the labels, but one rule for both keeps them from drifting apart again.
    - ``device`` type (cpu or cuda: different kernels round differently, which can flip a label at a
      near tie) and ``precision`` (bf16/fp16 change the scores).

    Left out on purpose: ``workers`` and torch threads (results are identical for any number,
    tested), ``batch_size`` (tiles are independent in eval mode, and running out of GPU memory is a
    reason to resume with a smaller batch), the CUDA device index (each Dask worker picks its own GPU),
    ``out_dir`` (the journal lives in it), ``vector`` and ``preview`` (made at the end from the
    whole labels) and ``resume`` itself.
    """
    area = plan.area
    fingerprint = {
        "image": {**(file_identity(config.image) or {}), "size": [info.width, info.height, info.count]},
        "model": model, "card": _card_fields(card), "bands": list(plan.bands), "tile_size": plan.tile_size,
        "overlap": int(plan.overlap), "block_size": plan.block,
        "region": [area.col_off, area.row_off, area.width, area.height],
        "crf": config.crf.to_dict() if config.crf is not None else None, "probabilities": config.probabilities,
        "truth": file_identity(config.truth), "device": str(device).split(":")[0], "precision": precision,
    }
    if not config.fusion.identity:
        fingerprint["test_time"] = config.fusion.to_dict()
    return json.loads(json.dumps(fingerprint, default=str))  # plain JSON types, as stored


def check_same_run(where: str | Path, stored: dict, fingerprint: dict) -> None:
    """Refuse to resume (one-line :class:`SegdeepError` naming the settings that changed) unless the
    fingerprint ``stored`` at ``where`` by the interrupted run equals this run's."""
    stored = json.loads(json.dumps(stored, default=str))
    fingerprint = json.loads(json.dumps(fingerprint, default=str))
    if stored != fingerprint:
        diff = sorted(k for k in set(fingerprint) | set(stored) if fingerprint.get(k) != stored.get(k))
        raise SegdeepError(f"{where}: the interrupted run used different settings ({', '.join(diff)}); "
                           "run without --resume to start again, or use the same settings")


def _bytes_digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class Journal:
    """Finished blocks of a run in ``out_dir``; see the module notes.

    A part's file name carries a short digest of the run's fingerprint, and the journal records the
    digest of each part's bytes: on resume, only parts of this very run whose bytes are intact count
    as finished (a part left by another run, cut short or damaged is computed again).
    """

    def __init__(self, out_dir: str | Path, fingerprint: dict, resume: bool) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / JOURNAL_NAME
        self.parts = self.out_dir / PARTS_NAME
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalised (tuples -> lists)
        self.run_id = _bytes_digest(json.dumps(self.fingerprint, sort_keys=True).encode())[:12]
        self.done: set[int] = set()
        self.digests: dict[str, str] = {}  # part file name -> digest of its bytes
        if resume and self.path.exists():
            try:
                data = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise SegdeepError(f"{self.path}: unreadable resume journal ({exc}); run without --resume") from None
            check_same_run(self.path, data.get("fingerprint") or {}, self.fingerprint)
            stored = data.get("digests") or {}
            for i in data.get("done", []):
                names = [self.part_path(int(i), kind).name for kind in self._kinds()]
                if all(self._intact(name, stored.get(name)) for name in names):
                    self.done.add(int(i))
                    self.digests.update({name: stored[name] for name in names})
        else:
            self.discard()
        self.parts.mkdir(parents=True, exist_ok=True)
        self._save()

    def _kinds(self) -> tuple[str, ...]:
        return ("labels", "probabilities") if self.fingerprint.get("probabilities") else ("labels",)

    def _intact(self, name: str, digest: str | None) -> bool:
        if digest is not None and digest.startswith(_EMPTY):
            return True
        try:
            return digest is not None and _bytes_digest((self.parts / name).read_bytes()) == digest
        except OSError:
            return False

    def part_path(self, index: int, kind: str) -> Path:
        return self.parts / f"{kind}_{index:06d}.{self.run_id}.npy"

    def _save(self) -> None:
        write_json_atomic(self.path, {"fingerprint": self.fingerprint, "done": sorted(self.done),
                                      "digests": dict(sorted(self.digests.items()))})

    def finish_block(self, index: int, labels: np.ndarray, probabilities: np.ndarray | None = None) -> None:
        """Save a block's results, then record it as finished. A block that is all nodata (labels
        255, probabilities 0) writes no file: the journal records it as empty."""
        items = [("labels", labels)] + ([("probabilities", probabilities)] if probabilities is not None else [])
        empty = bool((labels == NODATA_LABEL).all()) and (probabilities is None or not probabilities.any())
        for kind, array in items:
            final = self.part_path(index, kind)
            if empty:
                self.digests[final.name] = _EMPTY + ",".join(str(n) for n in array.shape)
                continue
            tmp = final.with_name(final.stem + ".tmp.npy")
            buffer = io.BytesIO()
            np.save(buffer, array)
            data = buffer.getvalue()
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                # names the folder (a failed write() names no file)
                raise OSError(exc.errno, exc.strerror, str(self.parts)) from None
            self.digests[final.name] = _bytes_digest(data)
        self.done.add(index)
        self._save()

    def load(self, index: int, kind: str) -> np.ndarray:
        """A finished block's saved ``kind`` ("labels" or "probabilities"); a part that became
        unreadable since the journal checked it is a one-line :class:`SegdeepError`."""
        path = self.part_path(index, kind)
        digest = self.digests.get(path.name) or ""
        if digest.startswith(_EMPTY):
            shape = tuple(int(n) for n in digest[len(_EMPTY):].split(","))
            return np.full(shape, NODATA_LABEL if kind == "labels" else 0, dtype=np.uint8)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise SegdeepError(f"{path}: damaged resume part ({exc}); run again without --resume") from None

    def discard(self) -> None:
        """Remove the journal and every saved block."""
        shutil.rmtree(self.parts, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
