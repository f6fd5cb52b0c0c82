"""The ``segdeep`` command.

Each sub-command is one module in this package that defines ``NAME`` (the sub-command), ``HELP``
(one line), ``configure(parser)`` and ``run(args) -> int``. Modules are found automatically, so adding
a command is one new file. User errors (:class:`segdeep.errors.SegdeepError`) print one line and exit
with code 2; ``--debug`` shows the traceback instead.

A sub-command module imports the engine (beyond :mod:`segdeep.errors`) inside ``run``, so that
building the parser, and with it ``segdeep --help``, imports neither torch nor rasterio.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import pkgutil
import sys
import traceback

from ..errors import SegdeepError
from ..runtime import passive_wait_policy

__all__ = ["build_parser", "environment_error", "main"]


def _commands():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "NAME") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="segdeep",
        description="Semantic segmentation of large aerial and satellite rasters.",
    )
    parser.add_argument("--version", action="version", version=f"segdeep {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _commands():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "__doc__", None) or mod.HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    passive_wait_policy()  # before any sub-command imports torch (segdeep.runtime says why)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except SegdeepError as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"segdeep {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"segdeep {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a disk or file fault that no check before the work could see
        message = environment_error(exc)
        if message is None:
            raise
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"segdeep {args.command}: error: {message}", file=sys.stderr)
        return SegdeepError.exit_code


#: errno values of faults in the user's environment, not in segdeep: full disk or quota, read-only
#: file system, no permission, file too large for the file system.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def environment_error(exc: BaseException) -> str | None:
    """One line for an error caused by the disk or a damaged file (a full disk, a read-only or
    forbidden folder, a truncated raster as GDAL reports it), naming the file; None for anything
    else (a bug: its traceback is shown)."""
    if isinstance(exc, OSError) and exc.errno in _ENVIRONMENT_ERRNOS:
        where = exc.filename or "output"
        return f"{where}: {exc.strerror or exc}; free some space or choose a writable place for the output"
    if type(exc).__module__.startswith("rasterio") and type(exc).__name__ in ("RasterioIOError", "CPLE_AppDefinedError",
                                                                               "CPLE_FileIOError", "CPLE_OpenFailedError"):
        text = " ".join(str(exc).split())[:300]
        if any(word in text for word in ("No space left", "Read-only", "Permission denied", "Disk full")):
            return f"{text}; free some space or choose a writable place for the output"
        return f"{text} (the file is truncated, damaged or cannot be written)"
    return None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
