"""Exports of finished annotations: classification rows, SFT chats and preference pairs.

- Classification: one JSONL row per item, `label` plus one 0/1 column per category id, the
  user-file format that `bastion train` and `bastion eval` read, and the decision-path answers
  under `path` (auxiliary targets for training).
- SFT: TRL's conversational format, `{"messages": [system, user, assistant]}`. The system
  message is the category's judging prompt (the same one the LLM judge reads), the assistant
  reasons through the decision steps in order, then gives the JSON verdict.
- Preference pairs (DPO): where people corrected a pre-annotation, the corrected reasoning is
  `chosen` and the suggestion it replaced is `rejected`, in TRL's conversational preference
  format `{"prompt": [...], "chosen": [...], "rejected": [...]}`.

Each export comes with a dataset card: counts, policy versions and agreement.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.annotation.schema import Annotation, decision_key
from bastion.atomic import write_atomic
from bastion.policy import LoadedPolicy
from bastion.policy.loader import policy_text
from bastion.policy.render import render_category, render_content


@dataclass(frozen=True)
class Finished:
    """An item's final annotation for one category (agreed or adjudicated), and the
    pre-annotation that was shown for it, if any."""

    item_id: str
    text: str
    final: Annotation
    suggestion: Annotation | None = None


def classification_rows(finished: Sequence[Finished], policy: LoadedPolicy) -> list[dict[str, Any]]:
    """One row per item: `label` is 1 when any annotated category violates; each annotated
    category's column is 0/1, and categories nobody annotated for the item are left out.

    `path` holds the decision-path answers, `{category: {step id: answer}}`, for training that
    uses them as auxiliary targets; a reader that only wants labels ignores it."""
    rows: dict[str, dict[str, Any]] = {}
    for f in finished:
        row = rows.setdefault(f.item_id, {"id": f.item_id, "text": f.text, "label": 0, "path": {}})
        row[f.final.category] = int(f.final.violation)
        row["label"] = max(row["label"], int(f.final.violation))
        row["path"][f.final.category] = {s.step: s.answer for s in f.final.path}
    return list(rows.values())


def reasoning(annotation: Annotation, policy: LoadedPolicy, text: str) -> str:
    """The decision path as the assistant's reasoning: each question, its answer, the quoted
    evidence, then the verdict and rationale."""
    category = policy.policy.category(annotation.category)
    questions = {s.id: s.question for s in category.decision_steps}
    lines = []
    for k, step in enumerate(annotation.path, 1):
        quotes = "; ".join(f'"{text[s.start : s.end]}"' for s in step.spans)
        evidence = f" Evidence: {quotes}." if quotes else ""
        lines.append(f"{k}. [{step.step}] {questions.get(step.step, '')} {step.answer}.{evidence}")
    verdict = "violates" if annotation.violation else "does not violate"
    rules = f" (rule {', '.join(annotation.rule_ids)})" if annotation.rule_ids else ""
    lines.append(f"So the content {verdict} {category.id}{rules}. {annotation.rationale}".strip())
    return "\n".join(lines)


def verdict_json(annotation: Annotation, text: str) -> str:
    """The final answer in the LLM judge's JSON shape (so a tuned model answers as judges do)."""
    return json.dumps(
        {
            "violation": annotation.violation,
            "categories": [annotation.category] if annotation.violation else [],
            "severity": annotation.severity,
            "rule_ids": annotation.rule_ids,
            "confidence": annotation.confidence,
            "decision_path": [
                {
                    "step": s.step,
                    "answer": s.answer,
                    "evidence": text[s.spans[0].start : s.spans[0].end] if s.spans else "",
                }
                for s in annotation.path
            ],
            "rationale": annotation.rationale,
        },
        ensure_ascii=False,
    )


def _prompt(f: Finished, policy: LoadedPolicy) -> list[dict[str, str]]:
    category = policy.policy.category(f.final.category)
    return [
        {"role": "system", "content": render_category(policy.policy, category)},
        {"role": "user", "content": render_content(f.text)},
    ]


def _answer(annotation: Annotation, policy: LoadedPolicy, text: str) -> dict[str, str]:
    body = reasoning(annotation, policy, text) + "\n\n" + verdict_json(annotation, text)
    return {"role": "assistant", "content": body}


def sft_rows(finished: Sequence[Finished], policy: LoadedPolicy) -> list[dict[str, Any]]:
    return [{"messages": [*_prompt(f, policy), _answer(f.final, policy, f.text)]} for f in finished]


def preference_rows(finished: Sequence[Finished], policy: LoadedPolicy) -> list[dict[str, Any]]:
    """Pairs where a person changed the suggestion's verdict or path (an accepted suggestion
    teaches no preference)."""
    rows = []
    for f in finished:
        s = f.suggestion
        if s is None or (decision_key(s) == decision_key(f.final)):
            continue
        rows.append(
            {
                "prompt": _prompt(f, policy),
                "chosen": [_answer(f.final, policy, f.text)],
                "rejected": [_answer(s, policy, f.text)],
            }
        )
    return rows


def dataset_card(
    finished: Sequence[Finished],
    policy: LoadedPolicy,
    agreement: Mapping[str, float],
    files: Mapping[str, int],
) -> str:
    """Markdown: what was exported, under which policy versions, and how far people agreed."""
    items = {f.item_id for f in finished}
    per_category = Counter((f.final.category, f.final.violation) for f in finished)
    versions = Counter(f.final.policy_version for f in finished)
    lines = [
        f"# Dataset card: {policy.policy.name}",
        "",
        f"- Items: {len(items)}; annotations exported: {len(finished)}",
        f"- Policy versions: {', '.join(f'{v} ({n})' for v, n in sorted(versions.items()))}",
        f"- Pre-annotated: {sum(f.suggestion is not None for f in finished)}",
        "",
        "| category | violating | not violating |",
        "|---|---:|---:|",
    ]
    for category in sorted({c for c, _ in per_category}):
        lines.append(
            f"| {category} | {per_category[(category, True)]} | {per_category[(category, False)]} |"
        )
    lines += ["", "## Agreement (Krippendorff's alpha)", ""]
    lines += [f"- {name}: {value:.3f}" for name, value in agreement.items()]
    lines += ["", "## Files", ""]
    lines += [f"- `{name}`: {rows} rows" for name, rows in files.items()]
    return "\n".join(lines) + "\n"


EXPORT_FILES = ("classification.jsonl", "sft.jsonl", "preferences.jsonl")


def write_export(
    out: Path, finished: Sequence[Finished], policy: LoadedPolicy, agreement: Mapping[str, float]
) -> dict[str, int]:
    """Write every export into `out`: the three JSONL files, the policy they were made under
    (`policy.yaml`), a recipe that trains on them (`recipe.yaml`: `bastion train --recipe
    out/recipe.yaml`) and the dataset card (`README.md`). Returns rows per JSONL file.

    Each file is written whole to a temporary name and renamed, so a crash leaves either the
    old export or the new one, never half of one."""
    out.mkdir(parents=True, exist_ok=True)
    rows = {
        "classification.jsonl": classification_rows(finished, policy),
        "sft.jsonl": sft_rows(finished, policy),
        "preferences.jsonl": preference_rows(finished, policy),
    }
    for name, content in rows.items():
        write_atomic(
            out / name, (json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in content)
        )
    counts = {name: len(content) for name, content in rows.items()}
    write_atomic(out / "policy.yaml", [policy_text(policy).encode()])
    write_atomic(out / "recipe.yaml", [_recipe(policy).encode()])
    card = dataset_card(finished, policy, agreement, counts)
    write_atomic(out / "README.md", [card.encode()])
    return counts


def _recipe(policy: LoadedPolicy) -> str:
    """A training recipe over the classification export, with the policy it was labelled under.

    The labels are the platform's own, made by its people: `use: ship-ok` is theirs to change
    if their data may not go into a model they ship."""
    name = policy.policy.id.replace("/", "-") + "-annotations"
    return (
        f"# Train on this export: bastion train --recipe recipe.yaml --out models/{name}\n"
        f"name: {name}\n"
        "policy: policy.yaml\n"
        "sources:\n"
        "  - file: classification.jsonl\n"
        "    licence: your own annotations\n"
        "    use: ship-ok\n"
        "  - policy_examples: true\n"
    )
