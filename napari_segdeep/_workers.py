"""Running segdeep's generators in napari thread workers: progress, cancel, one-line errors.

A :class:`Job` drives a segdeep generator (``iter_predict``, ``iter_refine_labels``, ``iter_train``,
...) in a napari ``thread_worker``. Each event goes to ``on_event`` in the GUI thread. ``cancel()``
makes the worker close the generator (in the worker thread, right after the event it is on), which
is how segdeep generators stop cleanly. Errors never reach napari as tracebacks: a
:class:`SegdeepError` is shown as its one-line message, anything else as ``Type: message`` (the
traceback goes to the log).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass

from segdeep.errors import SegdeepError
from segdeep.runtime import passive_wait_policy

log = logging.getLogger("napari_segdeep")


@dataclass
class Outcome:
    """How a job ended: ``state`` is "done", "cancelled" or "error"."""

    state: str
    value: object = None
    message: str = ""


def _drive(make: Callable[[], Generator], cancel: threading.Event):
    gen = None
    try:
        gen = make()
        while True:
            if cancel.is_set():
                gen.close()
                return Outcome("cancelled")
            try:
                event = next(gen)
            except StopIteration as stop:
                return Outcome("done", stop.value)
            yield event
    except SegdeepError as exc:
        return Outcome("error", message=str(exc).splitlines()[0] if str(exc) else "error")
    except Exception as exc:  # noqa: BLE001 - shown to the user as one line, traceback logged
        log.exception("segdeep job failed")
        first = str(exc).splitlines()[0] if str(exc) else ""
        return Outcome("error", message=f"{type(exc).__name__}: {first}")
    finally:
        if gen is not None:
            gen.close()


def load_triton_isolated() -> None:
    """Load triton (when installed) with its own symbols first (``RTLD_DEEPBIND``).

    torchvision imports torch._dynamo, which imports triton. Once napari has an OpenGL context on
    Mesa (llvmpipe, also radeonsi), loading triton's bundled LLVM next to Mesa's LLVM segfaults the
    process (measured here: ``napari.Viewer(); import triton`` crashes; with RTLD_DEEPBIND it does
    not). Call before anything imports torchvision; a no-op when triton is absent or loaded.
    """
    if "triton" in sys.modules or not hasattr(os, "RTLD_DEEPBIND"):
        return
    if importlib.util.find_spec("triton") is None:
        return
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    finally:
        sys.setdlopenflags(flags)


def load_engine() -> None:
    """Import segdeep's model code (torch, torchvision, all architectures) in the GUI thread, with
    triton isolated (see :func:`load_triton_isolated`), and torch's OpenMP threads sleeping rather than
    spinning while they wait (napari and the user's other programs share the cores; see
    :func:`segdeep.runtime.passive_wait_policy`). Cheap after the first call."""
    passive_wait_policy()
    load_triton_isolated()
    from segdeep.models import list_models

    list_models()


class Job:
    """One run of a segdeep generator in a worker thread, with a napari progress bar.

    ``make`` builds the generator (called in the worker thread). ``progress_of(event)`` returns
    ``(done, total)`` or None for events that do not move the bar. ``on_event(event)`` and
    ``on_end(outcome)`` run in the GUI thread.
    """

    def __init__(self, make: Callable[[], Generator], *, desc: str,
                 on_end: Callable[[Outcome], None], on_event: Callable[[object], None] | None = None,
                 progress_of: Callable[[object], tuple[int, int] | None] | None = None) -> None:
        from napari.qt.threading import create_worker
        from napari.utils import progress

        load_engine()
        self.cancel_event = threading.Event()
        self.outcome: Outcome | None = None
        self.ended = False  # True once the end handler has run
        self._on_event, self._on_end, self._progress_of = on_event, on_end, progress_of
        self.pbar = progress(total=0, desc=desc)
        self._bar_target, self._bar_moving = 0, False
        self.worker = create_worker(_drive, make, self.cancel_event, _start_thread=False)
        self.worker.yielded.connect(self._event)
        self.worker.returned.connect(self._returned)
        self.worker.errored.connect(self._errored)  # only if _drive itself fails
        self.worker.finished.connect(self._finished)
        self.worker.start()

    @property
    def running(self) -> bool:
        return self.outcome is None

    def cancel(self) -> None:
        """Ask the worker to stop; the generator is closed after its current event."""
        self.cancel_event.set()
        self.pbar.set_description(f"{self.pbar.desc} (cancelling)")

    def _event(self, event) -> None:
        # the handler first: moving the bar repaints and may run the end handler re-entrantly, which
        # must have the last word on the status line
        if self._on_event is not None and not self.ended:
            self._on_event(event)
        if self._progress_of is not None:
            step = self._progress_of(event)
            if step is not None:
                done, total = step
                if self.pbar.total != total:
                    self.pbar.total = total  # emits napari's "total" event: the activity bar gets its scale
                self._move_bar(done)

    def _move_bar(self, done: int) -> None:
        """Move the bar to ``done`` with ``update`` (emits napari's "value" event, which setting ``n``
        would not). The activity dock repaints inside ``update`` and may deliver the worker's next
        event then: that re-entrant call only moves the target, so the bar never goes backwards."""
        self._bar_target = done
        if self._bar_moving:
            return
        self._bar_moving = True
        try:
            # a closed bar (the job ended meanwhile) ignores updates: stop rather than spin
            while self.pbar.n != self._bar_target and not self.pbar.disable:
                self.pbar.update(self._bar_target - self.pbar.n)
        finally:
            self._bar_moving = False

    def _returned(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def _errored(self, exc: Exception) -> None:
        self.outcome = Outcome("error", message=f"{type(exc).__name__}: {exc}")

    def _finished(self) -> None:
        self.pbar.close()
        outcome = self.outcome or Outcome("cancelled")
        self.outcome = outcome
        if outcome.state == "error":
            notify_error(outcome.message)
        try:
            self._on_end(outcome)
        except SegdeepError as exc:
            outcome.state, outcome.message = "error", str(exc)
            notify_error(str(exc))
        finally:
            self.ended = True


def notify_error(message: str) -> None:
    """Show a one-line error in napari's notification area (no traceback)."""
    from napari.utils.notifications import show_error

    show_error(message)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def show_in_dock(widget, message: str) -> None:
    """Put ``message`` in the dock's own status line (when it has one), so it is seen beside the
    button that caused it, not only in a notification that fades."""
    status = getattr(widget, "status", None)
    if status is not None and hasattr(status, "setText"):
        status.setText(message)


def guarded(func: Callable) -> Callable:
    """Wrap a button handler: an error becomes a one-line napari notification (no traceback) and
    the dock's status line."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except SegdeepError as exc:
            message = str(exc).splitlines()[0] if str(exc) else "error"
        except Exception as exc:  # noqa: BLE001 - one line for the user, traceback in the log
            log.exception("segdeep widget action failed")
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        if args:
            show_in_dock(args[0], f"error: {message}")
        notify_error(message)
        return None

    return wrapper
