"""``--set a.b.c=value`` overrides of nested config dataclasses, with clear errors."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from omnifield.errors import OmnifieldError


def _parse_value(text: str, current: Any, where: str) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise OmnifieldError(f"{where}: expected true/false, got {text!r}")
    if isinstance(current, (int, float)) and not isinstance(current, bool):
        try:
            number = float(text)
        except ValueError:
            raise OmnifieldError(f"{where}: expected a number, got {text!r}") from None
        if not math.isfinite(number):
            raise OmnifieldError(f"{where}: expected a finite number, got {text!r}")
        if isinstance(current, float):
            return number
        if not number.is_integer():
            raise OmnifieldError(f"{where}: expected a whole number, got {text!r}")
        return int(number)
    if isinstance(current, (tuple, list)):
        try:
            value = json.loads(text if text.startswith("[") else f"[{text}]")
        except json.JSONDecodeError:
            raise OmnifieldError(f"{where}: expected a comma-separated list, got {text!r}") from None
        return type(current)(value)
    return text


def apply_override(cfg: Any, assignment: str, root: str = "config") -> Any:
    """Return a copy of ``cfg`` with ``"a.b=value"`` applied (dataclass fields, nested)."""
    if "=" not in assignment:
        raise OmnifieldError(f"--set {assignment!r}: expected KEY=VALUE")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")

    def rec(node: Any, i: int, where: str) -> Any:
        if not dataclasses.is_dataclass(node):
            raise OmnifieldError(f"--set {key}: {where} is not a config section")
        names = [f.name for f in dataclasses.fields(node)]
        name = parts[i]
        if name not in names:
            raise OmnifieldError(f"--set {key}: {where} has no option {name!r} (options: {', '.join(names)})")
        current = getattr(node, name)
        value = rec(current, i + 1, f"{where}.{name}") if i + 1 < len(parts) else _parse_value(text, current, key)
        try:
            return dataclasses.replace(node, **{name: value})
        except (TypeError, ValueError) as exc:
            raise OmnifieldError(f"--set {key}: {exc}") from None

    return rec(cfg, 0, root)


def apply_section_overrides(roots: dict[str, Any], assignments: list[str],
                            frozen: dict[str, str] | None = None) -> dict[str, Any]:
    """``roots`` (section name -> config) with each ``--set section.key=value`` applied to its section.

    An assignment naming no section of ``roots`` is refused, listing them; a section in ``frozen`` is
    refused with the reason given there (e.g. a resumed run's model)."""
    roots = dict(roots)
    names = [f"{name}." for name in roots]
    allowed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    for assignment in assignments:
        section = assignment.split(".", 1)[0]
        if section not in roots or "." not in assignment.split("=", 1)[0]:
            raise OmnifieldError(f"--set {assignment!r}: must start with {allowed}")
        if frozen and section in frozen:
            raise OmnifieldError(f"--set {assignment!r}: {frozen[section]}")
        roots[section] = apply_override(roots[section], assignment.split(".", 1)[1], section)
    return roots
