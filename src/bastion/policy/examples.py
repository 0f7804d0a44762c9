"""Few-shot: labelled examples from a JSONL file added to a policy's categories.

Each line is `{"text": ..., "category": "hate", "label": 1}` (label 1 = violates, 0 = does not).
The result is a new policy version (the content hash covers the examples), because the examples
change how the policy scores: a verdict must say which examples produced it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bastion.errors import PolicyError
from bastion.policy.loader import LoadedPolicy
from bastion.policy.schema import Policy

_TRUE = {"1", "true", "yes", "violating", "unsafe"}
_FALSE = {"0", "false", "no", "not_violating", "safe"}


@dataclass(frozen=True)
class LabelledExample:
    text: str
    category: str
    violates: bool


def load_examples(path: Path | str, policy: LoadedPolicy) -> list[LabelledExample]:
    """Read and check every line; all problems are reported together, with file and line."""
    known = set(policy.category_ids)
    examples: list[LabelledExample] = []
    problems: list[str] = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            where = f"line {number}"
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                problems.append(f"{where}: not valid UTF-8")
                continue
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: malformed JSON ({exc.msg})")
                continue
            if not isinstance(obj, dict):
                problems.append(f"{where}: expected a JSON object")
                continue
            text, cat, label = obj.get("text"), obj.get("category"), obj.get("label")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{where}: 'text' must be a non-empty string")
                continue
            if cat not in known:
                problems.append(
                    f"{where}: unknown category {cat!r} for policy {policy.version} "
                    f"(known: {', '.join(policy.category_ids)})"
                )
                continue
            value = str(label).strip().lower()
            if value not in _TRUE | _FALSE:
                problems.append(f"{where}: 'label' must be 1/0 (or true/false), got {label!r}")
                continue
            examples.append(LabelledExample(text, str(cat), value in _TRUE))
    if problems:
        raise PolicyError(str(path), problems)
    return examples


def with_examples(
    policy: LoadedPolicy, examples: Sequence[LabelledExample], source: str
) -> LoadedPolicy:
    """A copy of the policy with the examples appended to their categories (a new version)."""
    data = policy.policy.model_dump(mode="json")
    index = {c["id"]: c for c in data["categories"]}
    for ex in examples:
        bucket = index[ex.category]["examples"]["positive" if ex.violates else "negative"]
        if ex.text not in bucket:
            bucket.append(ex.text)
    return LoadedPolicy(Policy.model_validate(data), f"{policy.source} + {source}")
