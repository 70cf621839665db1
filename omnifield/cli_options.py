"""Options every training command shares, built into the engine's :class:`~omnifield.engine.LoopConfig`."""

from __future__ import annotations

import argparse
import sys
from typing import Iterable

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
        say_old(option_string or f"the positional {self.metavar}", self.new)
        setattr(namespace, self.dest, values)


def say_old(old: str, new: str) -> None:
    """The note on stderr that ``old`` is the old spelling of ``new``."""
    print(f"omnifield: {old} is the old name of {new}; use {new}", file=sys.stderr)


def add_old_name(parser: argparse.ArgumentParser | argparse._ArgumentGroup, old: str, new: str, dest: str,
                 **kwargs) -> None:
    """Option ``old`` (e.g. ``--run``) writing ``dest`` like the newer ``new`` (``--out``, a positional ``RUN``)
    does, with the note that it is old; ``kwargs`` as for ``add_argument`` (``type``, ``choices``, ``default``:
    none unless given, so that the new spelling's stands)."""
    kwargs.setdefault("default", argparse.SUPPRESS)
    kwargs.setdefault("help", f"old name of {new}")
    parser.add_argument(old, dest=dest, action=_OldName, new=new, **kwargs)


def add_optional_positional(parser: argparse.ArgumentParser, dest: str, metavar: str, help: str,
                            old_of: str | None = None) -> None:
    """Positional ``metavar`` writing ``dest`` only when given (an option, e.g. ``--run``, may write it
    instead; the command refuses neither, see :func:`require_given`). ``old_of``: the option it is the old
    form of (e.g. ``--out``), said when it is used."""
    extra = {"action": _OldName, "new": old_of} if old_of else {}
    parser.add_argument(dest, nargs="?", metavar=metavar, default=argparse.SUPPRESS,
                        help=f"old form of {old_of}: {help}" if old_of else help, **extra)


def require_given(args: argparse.Namespace, dest: str, what: str) -> str:
    """``args.<dest>``, or one line saying that ``what`` (e.g. ``the run folder RUN``) is missing."""
    from omnifield.errors import OmnifieldError

    value = getattr(args, dest, None)
    if value is None:
        raise OmnifieldError(f"{what} is required")
    return value


def add_method_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str,
                        choices: list[str] | None = None, default: str | None = None,
                        old_names: tuple[str, ...] = ()) -> None:
    """``--method``, the one name of the backend option in every command; ``old_names`` (e.g. ``--to``,
    ``--backend``) still work and say that they are old."""
    add_new_and_old(parser, "--method", old_names, dest="method", choices=choices, default=default, help=help)


def add_new_and_old(parser: argparse.ArgumentParser | argparse._ArgumentGroup, new: str, old_names: tuple[str, ...],
                    **kwargs) -> None:
    """Option ``new`` (``add_argument`` ``kwargs``, ``dest`` among them) and each of ``old_names`` storing the
    same ``dest``, saying that it is old."""
    parser.add_argument(new, **kwargs)
    shared = {k: kwargs[k] for k in ("dest", "type", "choices", "metavar") if k in kwargs}
    for name in old_names:
        add_old_name(parser, name, new, **shared)


def require_method(args: argparse.Namespace, what: str) -> str:
    """``args.method``, or one line saying that the command needs it (``what``: the choices in words)."""
    from omnifield.errors import OmnifieldError

    if not getattr(args, "method", None):
        raise OmnifieldError(f"--method is required: {what}")
    return args.method


def option_string(parser: argparse.ArgumentParser, dest: str) -> str:
    """The option string of ``dest`` (its first spelling)."""
    action = next(a for a in parser._actions if a.dest == dest and a.option_strings)
    return action.option_strings[0]


def parser_default(parser: argparse.ArgumentParser, dest: str):
    """The parser's default of ``dest`` (an old spelling's ``SUPPRESS`` is no default)."""
    if dest in parser._defaults:
        return parser._defaults[dest]
    return next((a.default for a in parser._actions if a.dest == dest and a.default is not argparse.SUPPRESS), None)


class Applicability:
    """Which values of a choice option (``--method``, ``--solver``) each other option applies to.

    ``table`` maps an option's ``dest`` to the choices it applies to; ``choices``, when given, are all the
    valid ones (an unknown choice is left to the command, which names the valid ones). An option counts as
    given when its parsed value differs from the parser's default (one given with its default is harmless).
    Stored in the parsed namespace by :func:`declare_applicability` (one per choice option); :func:`refuse_inapplicable`
    checks it.
    """

    def __init__(self, parser: argparse.ArgumentParser, table: dict[str, set[str] | frozenset[str]],
                 flag: str = "--method", choices: Iterable[str] | None = None):
        self.parser, self.table, self.flag = parser, dict(table), flag
        self.choices = None if choices is None else frozenset(choices)

    def given(self, args: argparse.Namespace) -> list[str]:
        """The ``dest`` of every option in the table that ``args`` set to other than its default, in table order."""
        return [dest for dest in self.table
                if hasattr(args, dest) and getattr(args, dest) != parser_default(self.parser, dest)]

    def check(self, args: argparse.Namespace, chosen: str) -> None:
        """Refuse, in one line, the first given option that does not apply to ``chosen``."""
        from omnifield.errors import OmnifieldError

        if self.choices is not None and chosen not in self.choices:
            return
        for dest in self.given(args):
            if chosen not in self.table[dest]:
                allowed = ", ".join(sorted(self.table[dest]))
                raise OmnifieldError(f"{option_string(self.parser, dest)} applies to {self.flag} {allowed} only "
                                     f"(got {self.flag} {chosen})")


class RunSettings:
    """The options of a training command that a resumed run takes from its folder, not from the command line.

    Every option of ``parser`` except ``changeable`` (budget, output, device, progress, ...) is a setting.
    :meth:`check` refuses a setting given on ``--resume`` (set to other than its default) whose value differs
    from the run's; one given with the run's own value is harmless.
    """

    def __init__(self, parser: argparse.ArgumentParser, changeable: Iterable[str]):
        self.parser = parser
        changeable = set(changeable) | {"help"}
        self.dests = list(dict.fromkeys(a.dest for a in parser._actions if a.option_strings and a.dest not in changeable))

    def check(self, args: argparse.Namespace, stored: dict, where: str) -> None:
        """Refuse, in one line, the first setting ``args`` gives that differs from ``stored`` (``dest -> the
        run's value``; a setting missing there cannot be compared and is refused too). ``where``: the run."""
        from omnifield.errors import OmnifieldError

        for dest in self.dests:
            value = getattr(args, dest, None)
            if value == parser_default(self.parser, dest) or (dest in stored and _same_setting(value, stored[dest])):
                continue
            has = f" (the run has {stored[dest]!r})" if dest in stored else ""
            raise OmnifieldError(f"{option_string(self.parser, dest)} {value!r}: {where} keeps its own settings on --resume"
                                 f"{has}; only the budget and output options change, or train into a new --out")


def _same_setting(given, stored) -> bool:
    """Whether an option's value equals a stored setting (lists and tuples alike)."""
    if isinstance(given, (list, tuple)) and isinstance(stored, (list, tuple)):
        return list(given) == list(stored)
    return given == stored


def declare_run_settings(parser: argparse.ArgumentParser, changeable: Iterable[str]) -> None:
    """Record on ``parser`` which of its options are a run's settings (all but ``changeable``, as ``dest``
    names); the command calls :func:`refuse_changed_settings` when it resumes a run."""
    parser.set_defaults(run_settings=RunSettings(parser, changeable))


def refuse_changed_settings(args: argparse.Namespace, stored: dict, where: str) -> None:
    """One line (exit 2) when ``args`` gives a run setting other than the run's ``stored`` value
    (see :class:`RunSettings`); nothing when the command declared none."""
    settings = getattr(args, "run_settings", None)
    if settings is not None:
        settings.check(args, stored, where)


def declare_applicability(parser: argparse.ArgumentParser, table: dict[str, set[str] | frozenset[str]],
                          flag: str = "--method", choices: Iterable[str] | None = None) -> None:
    """Record on ``parser`` which ``flag`` choices each option of ``table`` (``dest -> choices``) applies to
    (``choices``: all valid ones, see :class:`Applicability`); the command then calls
    :func:`refuse_inapplicable` once the choice is settled."""
    declared = dict(parser.get_default("applicability") or {})
    declared[flag] = Applicability(parser, table, flag, choices)
    parser.set_defaults(applicability=declared)


def options_of(group: argparse._ArgumentGroup, choices: set[str] | frozenset[str]) -> dict[str, frozenset[str]]:
    """``dest -> choices`` for every option of an argument group (e.g. the splat group: ``{"splat"}``)."""
    return {action.dest: frozenset(choices) for action in group._group_actions}


def refuse_inapplicable(args: argparse.Namespace, chosen: str, flag: str = "--method") -> None:
    """One line (:class:`~omnifield.errors.OmnifieldError`, exit 2) when an option given applies to other
    ``flag`` choices than ``chosen``, e.g. ``--compact applies to --method splat only (got --method hashgrid)``."""
    applicability = (getattr(args, "applicability", None) or {}).get(flag)
    if applicability is not None:
        applicability.check(args, chosen)
