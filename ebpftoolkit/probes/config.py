"""The base of every probe's configuration: a frozen dataclass, validated when it is made,
stored as plain data in a recording's metadata and rebuilt from it on load.

Validation here is about types and ranges only, so that a configuration saved on one
machine loads on any other; what depends on the machine (an event this CPU cannot
count, a library that is missing) is checked by the probe when it is built.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import ProbeConfigError

__all__ = ["ProbeConfig", "CONFIG_CLASSES", "int_option", "bool_option", "power_of_two"]

#: probe kind (the probe class's name) -> its configuration class
CONFIG_CLASSES: dict[str, type["ProbeConfig"]] = {}


@dataclass(frozen=True)
class ProbeConfig:
    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            CONFIG_CLASSES[cls.kind] = cls

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ProbeConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored, missing ones take their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: _tuples(v) for k, v in d.items() if k in names})


def _plain(v):
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def _tuples(v):
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def int_option(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ProbeConfigError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ProbeConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return int(value)


def bool_option(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ProbeConfigError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def power_of_two(name: str, value, hi: int = 1 << 20) -> int:
    v = int_option(name, value, 1, hi)
    if v & (v - 1):
        raise ProbeConfigError(f"{name} must be a power of two, got {v}")
    return v
