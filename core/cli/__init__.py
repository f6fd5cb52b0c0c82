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
import importlib
import pkgutil
import sys
import traceback

from ..errors import SegdeepError
from ..runtime import passive_wait_policy

__all__ = ["build_parser", "main"]


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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
