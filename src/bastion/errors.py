"""One error hierarchy: every failure a user can cause ends in a BastionError with an actionable message."""

from __future__ import annotations


class BastionError(Exception):
    """Base of every error Bastion raises on purpose; the CLI prints the message without a traceback."""


class PolicyError(BastionError):
    """A policy file or pack could not be loaded: each problem names the file, the field path and what was expected."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{source}: {len(problems)} {noun} in policy\n{lines}")


class InputError(BastionError):
    """An input item or file line could not be read or scored."""


class LabelMapError(BastionError):
    """A label map refers to something the policy or the dataset does not have."""


class DatasetError(BastionError):
    """A dataset is missing, unreadable or not in the format its adapter expects."""


class ModelError(BastionError):
    """A model could not be found or loaded (never downloaded at run time)."""
