"""Validation of config fields, shared by the families' frozen config dataclasses.

Each check raises ValueError naming the field and the fix; training.config turns it into a
ConfigError with the section prefix ("model/hidden_dims ...").
"""

from __future__ import annotations

import numbers
import re

_POSITIVE_INTS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


def check_positive_int(name: str, value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"{name} ({what}) must be an int >= 1, got {value!r}; set {name}=1 or more"
        )


def check_choice(name: str, value, choices, what: str) -> None:
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, choices))} ({what}), got {value!r}"
        )


def parse_int_list(name: str, text, example: str, minimum: int = 1) -> tuple[int, ...]:
    """'256,128' -> (256, 128): comma-separated ints >= ``minimum`` (1 or 0), spaces allowed;
    ValueError naming ``name`` otherwise. Lists travel as strings (Optuna categoricals,
    ``--set key=value``)."""
    if not isinstance(text, str):
        raise ValueError(
            f"{name} must be a string of comma-separated positive ints such as {example!r}, got "
            f"{text!r} ({type(text).__name__}); pass it quoted, e.g. {name}={example!r}"
        )
    if not _POSITIVE_INTS.match(text) or any(int(p) < minimum for p in text.split(",")):
        kind = "positive" if minimum >= 1 else "non-negative"
        raise ValueError(
            f"{name} must be comma-separated {kind} ints such as {example!r}, got {text!r}"
        )
    return tuple(int(p) for p in text.split(","))
