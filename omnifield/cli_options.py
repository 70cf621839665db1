"""Options every training command shares, built into the engine's :class:`~omnifield.engine.LoopConfig`."""

from __future__ import annotations

import argparse
import sys

from omnifield.engine import LoopConfig


def add_loop_arguments(parser: argparse.ArgumentParser, steps: int, minutes: float = 0.0,
                       resume_what: str = "the run in --out") -> None:
    """``--steps``, ``--minutes``, ``--grad-clip``, ``--resume``, ``--quiet`` and ``--log`` with this command's defaults."""
    g = parser.add_argument_group("training budget and loop")
    g.add_argument("--steps", type=int, default=steps, help=f"maximum optimisation steps (default {steps})")
    g.add_argument("--minutes", type=float, default=minutes,
                   help=f"training time budget in minutes, the first step's kernel compile not counted "
                        f"(default {minutes:g}; 0 = none); the run stops at whichever limit comes first")
    g.add_argument("--grad-clip", type=float, default=0.0, help="clip the gradient norm (0 = off)")
    g.add_argument("--resume", action="store_true", help=f"continue {resume_what} from its checkpoint")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    add_log_argument(g)


def add_log_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--log none|tensorboard``: where the training log goes besides ``log.jsonl`` and ``curves.png``."""
    parser.add_argument("--log", choices=["none", "tensorboard"], default="none",
                        help="also write TensorBoard event files into RUN/tensorboard (needs the tensorboard "
                             "package: pip install 'omnifield[tracking]'); log.jsonl and curves.png are always written")


def loop_config(args: argparse.Namespace, **overrides) -> LoopConfig:
    """The :class:`LoopConfig` of the options of :func:`add_loop_arguments` (``overrides`` win)."""
    values = dict(steps=args.steps, minutes=args.minutes, grad_clip=args.grad_clip,
                  progress=not getattr(args, "quiet", False), tensorboard=getattr(args, "log", "none") == "tensorboard")
    values.update(overrides)
    cfg = LoopConfig(**values)
    cfg.check()
    return cfg


class _OldName(argparse.Action):
    """An old spelling of an option: stores where the new one does and says, on stderr, which name replaces it."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"omnifield: {option_string} is the old name of {self.new}; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_method_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str,
                        choices: list[str] | None = None, default: str | None = None,
                        old_names: tuple[str, ...] = ()) -> None:
    """``--method``, the one name of the backend option in every command; ``old_names`` (e.g. ``--to``,
    ``--backend``) still work and say that they are old."""
    parser.add_argument("--method", dest="method", choices=choices, default=default, help=help)
    for name in old_names:
        parser.add_argument(name, dest="method", choices=choices, action=_OldName, new="--method",
                            help="old name of --method")


def require_method(args: argparse.Namespace, what: str) -> str:
    """``args.method``, or one line saying that the command needs it (``what``: the choices in words)."""
    from omnifield.errors import OmnifieldError

    if not getattr(args, "method", None):
        raise OmnifieldError(f"--method is required: {what}")
    return args.method
