"""Errors a user can cause and fix.

A :class:`SegdeepError` carries a one-line message that names the file, the value and what would be
accepted. The CLI prints it without a traceback and exits with code 2 (traceback with ``--debug``);
the napari plugin shows it as a notification.
"""

from __future__ import annotations


class SegdeepError(Exception):
    """A user error: bad input, bad option, misaligned rasters, unreadable model bundle."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep it on one line whatever the caller passed.
        super().__init__(" ".join(str(message).split()))


class Cancelled(Exception):
    """Raised inside a long task when its consumer asked it to stop."""
