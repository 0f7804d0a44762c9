"""Bastion: write a content policy once, then moderate, triage, label, train and serve against it."""

from bastion.errors import BastionError
from bastion.items import Item
from bastion.moderator import Moderator, Verdict, moderate
from bastion.policy import load_policy

__version__ = "0.1.0"
__all__ = ["BastionError", "Item", "Moderator", "Verdict", "__version__", "load_policy", "moderate"]
