"""The service's loaded moderators: which policy and model a request's names resolve to, loaded once.

Names are resolved only against what the operator installed: the built-in policy packs, policy
files in `BASTION_HOME/policies/NAME.yaml`, and models in `BASTION_HOME/models/NAME/` (or
"default" and "zero-shot"). A request can never make the service open an arbitrary path.
OpenAI's model names ("omni-moderation-latest", ...) mean the default policy and model, so
existing clients work unchanged.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.detectors.text_model import DEFAULT_MODEL, ZERO_SHOT
from bastion.errors import InputError
from bastion.items import Item
from bastion.judge.cascade import JudgeSettings
from bastion.media.limits import MediaLimits
from bastion.moderator import Moderator, Verdict
from bastion.policy import BUILTIN_PACKS, load_policy
from bastion.server.batching import MicroBatcher

OPENAI_MODEL_NAMES = frozenset(
    {
        "omni-moderation-latest",
        "omni-moderation-2024-09-26",
        "text-moderation-latest",
        "text-moderation-stable",
        "text-moderation-007",
    }
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-.]{0,63}$")


@dataclass(frozen=True)
class ModelKey:
    policy: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.policy}:{self.model}"


@dataclass
class Loaded:
    """A Moderator, the micro-batcher its text requests share, and a lock for media requests.

    Media requests (seconds of decoding, OCR, speech) run one at a time in their own handler
    thread beside the text batches, so a video never holds up the texts queued behind it.
    """

    moderator: Moderator
    batcher: MicroBatcher
    media_lock: threading.Lock = field(default_factory=threading.Lock)

    def moderate(self, items: Sequence[Item]) -> list[Verdict]:
        if any(item.has_media for item in items):
            with self.media_lock:
                return self.moderator.moderate(items)
        return self.batcher.moderate(items)


class ModeratorPool:
    def __init__(
        self,
        home: Path,
        *,
        default_policy: str = "openai",
        default_model: str = DEFAULT_MODEL,
        detectors: Sequence[str] = (),
        media_limits: MediaLimits | None = None,
        runtime: str | None = None,
        batch_wait_ms: float = 0.0,
        batch_max_items: int = 128,
        on_batch: Callable[[int], None] | None = None,
        llm: JudgeSettings | None = None,
    ) -> None:
        self.home = home
        self.llm = llm
        self.default = ModelKey(default_policy, default_model)
        self.detectors = list(detectors)
        self.media_limits = media_limits or MediaLimits()
        self.runtime = runtime
        self.batch_wait_ms = batch_wait_ms
        self.batch_max_items = batch_max_items
        self.on_batch = on_batch
        self._loaded: dict[ModelKey, Loaded] = {}
        self._lock = threading.Lock()

    def resolve(self, model: str | None = None, policy: str | None = None) -> ModelKey:
        """`model` as OpenAI's field ("POLICY" or "POLICY:MODEL"), or separate names."""
        if not model or model in OPENAI_MODEL_NAMES:
            model = None
        policy = policy or None
        if policy is None and model is not None and (":" in model or model in self.policies()):
            policy, _, model = model.partition(":")
            model = model or None
        if policy is None and model is not None and model not in self.models():
            raise InputError(
                f"unknown model '{model}': name a policy ({', '.join(self.policies())}), "
                f"POLICY:MODEL with a model ({', '.join(self.models())}), or an OpenAI "
                "moderation model name for the default"
            )
        key = ModelKey(policy or self.default.policy, model or self.default.model)
        if key.policy not in self.policies():
            raise InputError(
                f"unknown policy '{key.policy}'; this server has: {', '.join(self.policies())}"
            )
        if key.model not in self.models():
            raise InputError(
                f"unknown model '{key.model}'; this server has: {', '.join(self.models())}"
            )
        return key

    def policies(self) -> list[str]:
        local = sorted(
            p.stem for p in (self.home / "policies").glob("*.yaml") if _NAME.match(p.stem)
        )
        return sorted({*BUILTIN_PACKS, *local})

    def models(self) -> list[str]:
        local = sorted(
            p.name
            for p in (self.home / "models").glob("*")
            if p.is_dir() and _NAME.match(p.name) and (p / "manifest.json").exists()
        )
        return [
            DEFAULT_MODEL,
            ZERO_SHOT,
            *[m for m in local if m not in (DEFAULT_MODEL, ZERO_SHOT)],
        ]

    def get(self, key: ModelKey) -> Loaded:
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is None:
                moderator = self._build(key)
                batcher = MicroBatcher(
                    moderator,
                    max_wait_ms=self.batch_wait_ms,
                    max_items=self.batch_max_items,
                    on_batch=self.on_batch,
                    name=key.name,
                )
                loaded = Loaded(moderator, batcher)
                self._loaded[key] = loaded
            return loaded

    def _build(self, key: ModelKey) -> Moderator:
        local_policy = self.home / "policies" / f"{key.policy}.yaml"
        policy = load_policy(local_policy if local_policy.exists() else key.policy)
        local_model = self.home / "models" / key.model
        model: str | Path = local_model if local_model.is_dir() else key.model
        return Moderator(
            policy,
            model=model,
            detectors=self.detectors,
            media_limits=self.media_limits,
            runtime=self.runtime,
            cascade=self.llm.cascade(policy) if self.llm is not None else None,
        )

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(k.name for k in self._loaded)

    def close(self) -> None:
        with self._lock:
            for loaded in self._loaded.values():
                loaded.batcher.close()
                loaded.moderator.close()
            self._loaded.clear()
