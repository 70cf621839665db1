"""The ``omnifield`` command: one entry point, sub-commands contributed by each part of the package.

Each sub-command module exposes ``register(subparsers)`` which adds its
parsers and sets ``func`` (a callable taking the parsed namespace and returning
an exit code). Errors of type :class:`OmnifieldError` print one line and exit 2.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys

from omnifield import __version__
from omnifield.errors import OmnifieldError

# Modules contributing sub-commands, in the order they appear in --help.
SUBCOMMAND_MODULES = [
    "omnifield.apps.recon.cli",
    "omnifield.pde.cli",
    "omnifield.apps.mae.cli",
    "omnifield.apps.nav.cli",
    "omnifield.apps.splat.cli",
    "omnifield.distill.cli",
    "omnifield.apps.fit.cli",
    "omnifield.apps.export.cli",
    "omnifield.apps.viewer.cli",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="omnifield",
        description="Neural fields and 3D reconstruction: train, evaluate, render, convert, solve PDEs, navigate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"omnifield {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 2 bad input, 130 interrupted).

    Run as the program (``argv`` from the command line), it freezes the garbage collector's view of every
    object before returning: the interpreter exits next, and its final full collection over the few hundred
    thousand objects torch and a run leave would otherwise delay the exit, after Ctrl-C too, by seconds
    (tens of seconds on a loaded machine).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except OmnifieldError as exc:
        print(f"omnifield: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("omnifield: interrupted", file=sys.stderr)
        return 130
    finally:
        if argv is None:
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
