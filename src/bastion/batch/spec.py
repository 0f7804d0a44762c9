"""What it takes to build the same Moderator anywhere: the recipe each batch worker builds from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.detectors.text_model import DEFAULT_MODEL, ZERO_SHOT
from bastion.models.artifact import read_manifest
from bastion.moderator import Moderator
from bastion.policy import LoadedPolicy, load_policy, parse_policy
from bastion.policy.loader import BUILTIN_PACKS


@dataclass(frozen=True)
class ModeratorSpec:
    """A Moderator as plain values, so a Ray actor on another machine builds the same one.

    A policy file is carried as its YAML text (a worker need not see the file, and the policy
    version, a hash of its content, comes out the same); a built-in pack travels by name. A
    trained model directory travels as an absolute path, so it must be readable where the
    workers run (a shared file system); `default` and `zero-shot` ship with the package.
    """

    policy: str = "openai"
    policy_yaml: str | None = None
    model: str = DEFAULT_MODEL
    encoder: str | None = None
    batch_size: int = 1024

    @classmethod
    def of(
        cls,
        policy: str | Path = "openai",
        model: str | Path = DEFAULT_MODEL,
        *,
        encoder: str | None = None,
        batch_size: int = 1024,
    ) -> ModeratorSpec:
        """The spec for a policy (pack name or YAML path) and model; the policy is validated here."""
        name = str(policy)
        model_name = str(model)
        if model_name not in (DEFAULT_MODEL, ZERO_SHOT):
            model_name = str(Path(model_name).resolve())
            read_manifest(model_name)  # a ModelError here, not from every worker
        if name in BUILTIN_PACKS:
            return cls(name, None, model_name, encoder, batch_size)
        load_policy(policy)  # a PolicyError names every problem before any worker starts
        text = Path(policy).read_text(encoding="utf-8")
        return cls(name, text, model_name, encoder, batch_size)

    def load_policy(self) -> LoadedPolicy:
        if self.policy_yaml is None:
            return load_policy(self.policy)
        return parse_policy(self.policy_yaml, source=self.policy)

    def build(self) -> Moderator:
        return Moderator(
            self.load_policy(), model=self.model, encoder=self.encoder, batch_size=self.batch_size
        )
