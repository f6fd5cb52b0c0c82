"""Atomic writes: a file appears under its final name complete, or not at all.

Everything is written under a temporary sibling name (same folder, so the rename is atomic) and
renamed when complete; a failure removes the temporary file.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path

__all__ = ["temp_path", "write_json_atomic"]


def temp_path(path: str | Path) -> Path:
    """A temporary sibling name for ``path`` (same folder, so rename is atomic)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{uuid.uuid4().hex[:8]}.tmp{p.suffix}")


def write_json_atomic(path: str | Path, data: dict) -> Path:
    """Write ``data`` as indented JSON to ``path`` durably: a temporary sibling, flushed to disk,
    renamed (values JSON does not know are written as text)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path
