"""Bastion: write a content policy once, then moderate, triage, label, train and serve against it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.items import Item
    from bastion.moderator import Moderator, Verdict, moderate
    from bastion.policy import load_policy

__version__ = "0.1.0"
__all__ = ["BastionError", "Item", "Moderator", "Verdict", "__version__", "load_policy", "moderate"]

# The public API is loaded on first use, so that `import bastion` (and with it every
# `bastion --help`) does not pay for NumPy, the store and the detectors.
_LAZY = {
    "Item": "bastion.items",
    "Moderator": "bastion.moderator",
    "Verdict": "bastion.moderator",
    "moderate": "bastion.moderator",
    "load_policy": "bastion.policy",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bastion' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
