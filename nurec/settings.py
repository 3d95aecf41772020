"""Settings dataclasses built from plain mappings (TOML tables, JSON in model files).

Every settings table refuses a key it does not know, naming the table and the key, so a
typo in a config file is an error rather than a silently ignored setting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def check_known(data: Mapping[str, Any], known: Iterable[str], section: str,
                error: type[Exception] = ValueError) -> None:
    """Raise ``error`` naming ``section`` and the first key of ``data`` that is not in ``known``."""
    unknown = set(data) - set(known)
    if unknown:
        raise error(f"{section}: unknown setting '{sorted(unknown)[0]}'")


def field_names(cls: type) -> list[str]:
    """Return the field names of a dataclass."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return [f.name for f in fields(cls)]


def settings_from_dict(cls: type[T], data: Mapping[str, Any], section: str) -> T:
    """Return ``cls(**data)`` after refusing keys that are not fields of ``cls``."""
    check_known(data, field_names(cls), section)
    return cls(**data)
