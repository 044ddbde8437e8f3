"""Typed options read from signatures: one source for every model hyperparameter.

A model's constructor signature is the single place where its options, their types and
defaults are written; the ``Args:`` section of its class docstring gives each one its help
text, and a class attribute ``option_choices`` the allowed values where there is a closed
set.  :func:`signature_options` reads all three, :func:`coerce` checks (and where
unambiguous converts) a value read from YAML or the command line against a type hint, so a
wrong value fails when the config is read, naming the key, not deep inside training.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

__all__ = ["Option", "signature_options", "docstring_args", "coerce", "plain_text"]


@dataclass(frozen=True)
class Option:
    """One typed option: name, type hint, default, help text and allowed values."""

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple | None = None


def docstring_args(doc: str | None) -> dict[str, str]:
    """``{name: text}`` of a Google-style ``Args:`` section (continuation lines joined)."""
    out: dict[str, str] = {}
    inside, current, indent = False, None, None
    for line in inspect.cleandoc(doc or "").splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            inside = True
            continue
        if not inside or (not stripped and not out):
            continue
        width = len(line) - len(line.lstrip())
        if not stripped or width == 0:  # a blank or dedented line ends the section
            break
        match = re.match(r"(\w+)(?: \([^)]*\))?: (.*)", stripped)
        if match and indent in (None, width):
            indent, current = width, match.group(1)
            out[current] = match.group(2)
        elif current is not None:
            out[current] += " " + stripped
    return out


def plain_text(text: str) -> str:
    """Docstring markup (````x````, ``:class:`~a.b```) as plain text, for ``--help``."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def signature_options(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Option]:
    """The keyword options of ``cls.__init__`` with their hints, defaults, help and choices."""
    hints = typing.get_type_hints(cls.__init__)
    helps = docstring_args(cls.__doc__)
    choices = getattr(cls, "option_choices", {})
    options = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if (
            name == "self"
            or name in skip
            or parameter.kind
            not in (
                parameter.POSITIONAL_OR_KEYWORD,
                parameter.KEYWORD_ONLY,
            )
        ):
            continue
        default = None if parameter.default is parameter.empty else parameter.default
        options[name] = Option(
            name, hints.get(name, Any), default, helps.get(name, ""), choices.get(name)
        )
    return options


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def _coerce_one(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (a plain type), or raise ``TypeError``."""
    if hint is Any or hint is object:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise TypeError
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 2e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise TypeError from None
        raise TypeError
    origin = typing.get_origin(hint) or hint
    if isinstance(origin, type) and isinstance(value, origin):
        return value
    raise TypeError


def coerce(name: str, value: Any, hint: Any, choices: tuple | None = None) -> Any:
    """``value`` checked against the type hint ``hint`` (and ``choices``), converted where the
    text is unambiguous (``"2e-3"`` for a float, ``"3"`` for an int); raises ``ValueError``
    naming ``name`` otherwise."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    members = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in members:
        return None
    if value is None and choices is None:
        raise ValueError(f"{name}: expected {_type_name(hint)}, got None")
    for member in members:  # int before float in `int | float`: the first that fits wins
        if member is type(None):
            continue
        try:
            value_out = _coerce_one(value, member)
        except TypeError:
            continue
        if choices is not None and value_out not in choices:
            raise ValueError(f"{name}: must be one of {list(choices)}, got {value_out!r}")
        return value_out
    expected = " or ".join(_type_name(m) for m in members)
    raise ValueError(f"{name}: expected {expected}, got {value!r} ({type(value).__name__})")
