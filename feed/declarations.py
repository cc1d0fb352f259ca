"""How a setting is declared, read and checked, and how the reference documents it:
the machinery behind ``Settings`` (settings.py), which holds the declarations
themselves.

A setting is a field of ``Settings`` whose annotation is its type and whose
``setting(...)`` holds its default, what it accepts (a test and the same in words)
and what it does. ``declared_in`` reads those fields back as ``Declared``; parsing,
checking, ``feed config`` and docs/configuration.md all read them from there.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
_DECLARATION = "feed.setting"
T = TypeVar("T")


class SettingsError(ValueError):
    """A ``FEED_*`` variable has a value feed cannot use."""


@dataclass(frozen=True, slots=True)
class Accepts:
    """What a setting accepts: a test of the value, and the same in words."""

    test: Callable[[Any], bool]
    words: str


def between(low: float, high: float, unit: str = "") -> Accepts:
    return Accepts(lambda v: low <= v <= high, f"between {low} and {high} {unit}".rstrip())


def at_least(low: int, unit: str) -> Accepts:
    return Accepts(lambda v: v >= low, f"at least {low} {unit}")


def positive(unit: str) -> Accepts:
    return Accepts(lambda v: v > 0, f"a positive number of {unit}")


@dataclass(frozen=True, slots=True)
class Declared:
    """One setting as ``Settings`` declares it: its field and its ``setting(...)``."""

    name: str
    kind: type
    default: Any
    accepts: Accepts
    meaning: str
    shown: str | None
    secret: bool
    # How a value is shown where it may hold a password (a URL's): in messages,
    # ``feed config`` and the start-up log.
    redact: Callable[[str], str] | None = None

    @property
    def variable(self) -> str:
        return f"FEED_{self.name.upper()}"

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` text as this setting's type, or a SettingsError."""
        if self.kind is bool:
            if raw.lower() in TRUE_WORDS:
                return True
            if raw.lower() in FALSE_WORDS:
                return False
            raise SettingsError(
                f"{self.variable} must be true or false (or 1/0, yes/no, on/off), {self.got(raw)}"
            )
        try:
            return self.kind(raw)
        except ValueError:
            noun = {int: "an integer", float: "a number"}[self.kind]
            raise SettingsError(f"{self.variable} must be {noun}, {self.got(raw)}") from None

    def validate(self, value: Any) -> None:
        """Refuse a value of another type, or one its check refuses, naming the variable."""
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        wrong_type = not isinstance(value, self.kind) or (
            self.kind is not bool and isinstance(value, bool)
        )
        try:
            accepted = not wrong_type and self.accepts.test(value)
        except ValueError:  # a URL urllib cannot take apart, say
            accepted = False
        if not accepted:
            raise SettingsError(f"{self.variable} must be {self.accepts.words}, {self.got(value)}")

    def shown_value(self, value: Any) -> Any:
        """``value`` as it may be shown anywhere: a secret's hidden, a URL's password
        hidden."""
        if self.secret and value:
            return "***"
        if self.redact is not None and isinstance(value, str):
            return self.redact(value)
        return value

    def got(self, value: Any) -> str:
        """What a message that refuses ``value`` says it got: never a secret (its length
        alone, which is what a rule about its length needs)."""
        if self.secret:
            return f"got {len(str(value))} characters (not shown: the value is secret)"
        return f"got {self.shown_value(value)!r}"


def setting(
    default: T,
    accepts: Accepts,
    meaning: str,
    *,
    shown: str | None = None,
    secret: bool = False,
    redact: Callable[[str], str] | None = None,
) -> T:
    """Declare a setting: its default, what it accepts and what it does. ``shown`` is
    the default as the reference prints it, where the value itself would mislead; a
    ``secret`` never reaches a log, a message or ``feed config``, nor does what
    ``redact`` takes out of a value (a URL's password)."""
    declared = Declared("", object, default, accepts, meaning, shown, secret, redact)
    return dataclasses.field(default=default, metadata={_DECLARATION: declared})


def declared_in(settings: type) -> tuple[Declared, ...]:
    """Every setting the dataclass ``settings`` declares, in its order."""
    kinds = typing.get_type_hints(settings)
    return tuple(
        dataclasses.replace(field.metadata[_DECLARATION], name=field.name, kind=kinds[field.name])
        for field in dataclasses.fields(settings)
    )


def table(declared: tuple[Declared, ...]) -> list[str]:
    """The reference's rows: each variable, its default, what it accepts and does."""
    rows = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    for d in declared:
        rows.append(f"| `{d.variable}` | {_shown(d)} | {d.accepts.words} | {d.meaning} |")
    return rows


def _shown(declared: Declared) -> str:
    if declared.shown is not None:
        return declared.shown
    if declared.default == "":
        return "empty"
    if isinstance(declared.default, bool):
        return f"`{str(declared.default).lower()}`"
    return f"`{declared.default}`"
