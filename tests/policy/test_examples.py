"""Few-shot examples from JSONL: checked line by line, added as a new policy version, and useful."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import PolicyError
from bastion.moderator import Moderator
from bastion.policy import parse_policy
from bastion.policy.examples import load_examples, with_examples

POLICY = parse_policy(
    """
id: shop
version: "1"
name: Shop comments
categories:
  - id: spam
    name: Spam
    severity: 1
    definition: Posts that the shop moderators remove under house rule 7.
  - id: abuse
    name: Abuse
    severity: 2
    definition: Insults aimed at another user.
    examples:
      positive: [you are an idiot, shut up you loser, nobody wants you here moron]
      negative: [I disagree with you, that's a fair point, thanks for the help]
"""
)


def _write(tmp_path: Path, rows: list[object]) -> Path:
    path = tmp_path / "ex.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"text": "buy followers now", "category": "spam", "label": 1},
            {"text": "x", "category": "scam", "label": 1},
            {"text": "y", "category": "spam", "label": "maybe"},
            "{not json",
            {"text": "  ", "category": "spam", "label": 0},
        ],
    )
    with pytest.raises(PolicyError) as exc:
        load_examples(path, POLICY)
    problems = exc.value.problems
    assert len(problems) == 4
    assert (
        problems[0].startswith("line 2: unknown category 'scam'") and "spam, abuse" in problems[0]
    )
    assert problems[1].startswith("line 3: 'label'")
    assert problems[2].startswith("line 4: malformed JSON")
    assert problems[3].startswith("line 5: 'text'")


def test_examples_make_a_new_version_and_leave_the_original(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            {"text": "buy followers now", "category": "spam", "label": 1},
            {"text": "is this in stock", "category": "spam", "label": "false"},
        ],
    )
    extended = with_examples(POLICY, load_examples(path, POLICY), str(path))
    assert extended.version != POLICY.version
    assert extended.policy.category("spam").examples.positive == ["buy followers now"]
    assert extended.policy.category("spam").examples.negative == ["is this in stock"]
    assert POLICY.policy.category("spam").examples.positive == []


SPAM = [
    "DM me to double your bitcoin in 24 hours, guaranteed",
    "Buy 10k real followers now, cheap, link in bio",
    "Send 0.1 ETH to this wallet and get 1 ETH back",
    "I made $5000 this week from home, click my profile",
    "Free gift cards for the first 100 people who message me",
    "Join our forex signals group for passive income",
    "Limited offer!!! cheap watches, visit my page",
    "Earn money fast with this one trick, check my bio",
]
SHOP = [
    "Does this jacket run small?",
    "It arrived quickly and works great",
    "Is there a student discount?",
    "The colour is a bit darker than the photo",
    "Can I return it if it doesn't fit?",
    "Great quality for the price, would buy again",
    "Does it come with batteries?",
    "Mine broke after a week, disappointed",
]


@pytest.mark.slow
def test_a_few_examples_improve_scores_on_new_texts(tmp_path: Path) -> None:
    rows = [{"text": t, "category": "spam", "label": 1} for t in SPAM]
    rows += [{"text": t, "category": "spam", "label": 0} for t in SHOP]
    path = _write(tmp_path, rows)
    held_out_spam = [
        "Make $300 a day from your phone, message me for details",
        "cheap followers and likes, dm",
    ]
    held_out_ok = ["How long does shipping take to Canada?", "The zipper feels flimsy but it's ok"]

    def gap(policy: object) -> float:
        mod = Moderator(policy)  # type: ignore[arg-type]
        s = [v.category_scores["spam"] for v in mod.moderate(held_out_spam + held_out_ok)]
        return min(s[:2]) - max(s[2:])

    before = gap(POLICY)
    after = gap(with_examples(POLICY, load_examples(path, POLICY), str(path)))
    assert after > 0.2 and after > before + 0.1
