"""The ``omnifield`` command: one entry point, sub-commands contributed by each part of the package.

Each sub-command module exposes ``register(subparsers)`` which adds its
parsers and sets ``func`` (a callable taking the parsed namespace and returning
an exit code). Errors of type :class:`OmnifieldError` print one line and exit 2.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import math
import sys
from typing import Iterator

from omnifield import __version__
from omnifield.errors import OmnifieldError

# Modules contributing sub-commands, in the order they appear in --help.
SUBCOMMAND_MODULES = [
    "omnifield.apps.train.cli",
    "omnifield.apps.recon.cli",
    "omnifield.pde.cli",
    "omnifield.apps.mae.cli",
    "omnifield.apps.nav.cli",
    "omnifield.apps.splat.cli",
    "omnifield.apps.convert.cli",
    "omnifield.apps.fit.cli",
    "omnifield.apps.export.cli",
    "omnifield.apps.viewer.cli",
    "omnifield.apps.process.cli",
]


# Options that are budgets: negative values are refused for every command (0 keeps its meaning, e.g. "none").
BUDGET_OPTIONS = ("steps", "minutes", "seconds")


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``omnifield train: error: ...``) and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _option_strings(parser: argparse.ArgumentParser) -> dict[str, str]:
    """``dest -> '--option'`` over the parser and all its sub-commands (the first spelling of each)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                for dest, name in _option_strings(child).items():
                    names.setdefault(dest, name)
        elif action.option_strings:
            names.setdefault(action.dest, action.option_strings[-1])
        else:
            names.setdefault(action.dest, action.dest.upper())
    return names


def check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse NaN / Inf in any numeric option and negative budgets (:data:`BUDGET_OPTIONS`), for every command."""
    names = None
    for dest, value in vars(args).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        bad = ("must be a finite number" if any(not math.isfinite(v) for v in numbers) else
               "must be >= 0" if dest in BUDGET_OPTIONS and any(v < 0 for v in numbers) else None)
        if bad:
            names = names or _option_strings(parser)
            shown = " ".join(str(v) for v in values)
            raise OmnifieldError(f"{names.get(dest, '--' + dest.replace('_', '-'))} {bad}, got {shown}")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available sub-command."""
    parser = OneLineParser(
        prog="omnifield",
        description="Neural fields and 3D reconstruction: train, evaluate, render, convert, solve PDEs, navigate.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"omnifield {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for command in _leaf_parsers(parser):
        _add_common_options(command)
    return parser


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser that runs a command (the sub-commands' own, sub-sub-commands included)."""
    children = [child for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for child in dict.fromkeys(action.choices.values())]
    if not children:
        return [parser]
    return [leaf for child in children for leaf in _leaf_parsers(child)]


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    """``--threads`` and ``--quiet`` on every command (a command that defines its own keeps it)."""
    present = {option for action in parser._actions for option in action.option_strings}
    if "--threads" not in present:
        parser.add_argument("--threads", type=int, default=None,
                            help="torch CPU threads (default: torch's choice, the number of cores)")
    if "--quiet" not in present:
        parser.add_argument("--quiet", action="store_true", help="no progress bars")


@contextlib.contextmanager
def _common_options(args: argparse.Namespace) -> Iterator[None]:
    """``--threads`` (>= 1) and ``--quiet`` (every progress bar off) for the duration of the command."""
    import torch
    import tqdm.std

    threads, quiet = getattr(args, "threads", None), getattr(args, "quiet", False)
    if threads is not None and threads < 1:
        raise OmnifieldError(f"--threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    init = tqdm.std.tqdm.__dict__["__init__"]  # tqdm reads TQDM_* variables at import: too late to set one here
    if quiet:
        def quiet_init(self, *a, **kw):
            init.__get__(self, type(self))(*a, **{**kw, "disable": True})

        tqdm.std.tqdm.__init__ = quiet_init
    try:
        yield
    finally:  # main() also serves in-process callers (tests, notebooks): leave their settings as they were
        torch.set_num_threads(before)
        tqdm.std.tqdm.__init__ = init


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
        check_numbers(parser, args)
        with _common_options(args):
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
