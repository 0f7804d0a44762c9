"""Policy renderers: a category as the judging prompt an LLM reads, and an item as its content."""

from __future__ import annotations

from pathlib import Path

import pytest

import bastion.policy
from bastion.policy import Category, Policy, load_policy
from bastion.policy.render import Example, render_category, render_content, render_policy

STARTER = load_policy(Path(bastion.policy.__file__).parent / "starter.yaml").policy
THREATS = STARTER.category("harassment/threatening")
PROMPT = render_category(STARTER, THREATS)


def test_the_prompt_names_the_category_and_the_policy_version() -> None:
    assert PROMPT.startswith("# Content policy: Threats against a person (harassment/threatening)")
    assert f"version {STARTER.version}" in PROMPT


def test_the_prompt_has_the_definition_on_one_line() -> None:
    assert " ".join(THREATS.definition.split()) in PROMPT.splitlines()


def test_every_rule_is_listed_with_its_id() -> None:
    for rule in THREATS.violates:
        assert f"- [{rule.id}] {rule.text}" in PROMPT.splitlines()
    # plain-string rules are numbered: the third clause is R3
    assert "- [R3] Revealing where a person lives" in PROMPT


def test_what_does_not_violate_is_listed() -> None:
    section = PROMPT.split("## What does not violate")[1].split("##")[0]
    assert [line[2:] for line in section.strip().splitlines()] == THREATS.does_not_violate


def test_decision_steps_are_numbered_in_order_with_where_each_answer_leads() -> None:
    section = PROMPT.split("## Decision steps")[1].split("##")[0].strip().splitlines()[1:]
    assert section == [
        "1. [target] Does the content refer to a real person or group as a target? "
        '"yes" → go to [harm]; "no" → not violating.',
        "2. [harm] Does it express intent or a wish that the target be harmed? "
        '"yes" → go to [serious]; "no" → not violating.',
        "3. [serious] Would a reasonable reader take it seriously (not hyperbole, fiction or "
        'reporting)? "yes" → violating (rule direct-threat); "no" → not violating.',
    ]


def test_the_severity_and_the_answer_format_come_last() -> None:
    assert "Content that violates is severity 4 of 4." in PROMPT
    tail = PROMPT.split("## Answer format")[1]
    assert 'categories ["harassment/threatening"] if violating' in tail
    for field in ("violation", "categories", "severity", "rule_ids", "confidence"):
        assert f'"{field}"' in tail
    assert '"decision_path": [{"step": id, "answer": str, "evidence":' in tail
    assert PROMPT.index("## Severity") < PROMPT.index("## Answer format")


def test_examples_are_rendered_only_when_asked() -> None:
    assert "## Examples" not in PROMPT
    for text in THREATS.examples.positive + THREATS.examples.negative:
        assert text not in PROMPT

    with_one = render_category(STARTER, THREATS, examples=1)
    section = with_one.split("## Examples")[1].split("##")[0].strip().splitlines()
    assert section == [
        f'Content: "{THREATS.examples.positive[0]}" → violates',
        f'Content: "{THREATS.examples.negative[0]}" → does not violate',
    ]
    assert with_one.index("## Examples") < with_one.index("## Answer format")


def test_a_category_without_rules_or_steps_leaves_those_sections_out() -> None:
    bare = Category(id="spam", name="Spam", definition="Unsolicited ads.", severity=1)
    prompt = render_category(STARTER, bare, examples=2)
    for section in ("What violates", "What does not violate", "Decision steps", "Examples"):
        assert f"## {section}" not in prompt
    assert 'categories ["spam"]' in prompt


def test_the_content_goes_inside_content_tags_after_the_chosen_examples() -> None:
    examples = [Example("you are  a\ngenius", False), Example("I will find you", True)]
    user = render_content("see you tomorrow", examples=examples)
    assert user.endswith("## Content to judge\n<content>\nsee you tomorrow\n</content>")
    assert user.index('Content: "you are a genius" → does not violate') < user.index(
        'Content: "I will find you" → violates'
    )
    assert user.index("→ violates") < user.index("<content>")


def test_content_without_examples_is_only_the_content() -> None:
    assert render_content("hello") == "## Content to judge\n<content>\nhello\n</content>"


def test_empty_text_points_the_judge_at_the_image() -> None:
    assert "(no text; judge the attached image)" in render_content("  ")


def test_render_policy_gives_every_category_with_its_policy_examples() -> None:
    prompts = render_policy(STARTER)
    assert list(prompts) == ["harassment/threatening"]
    assert THREATS.examples.positive[1] in prompts["harassment/threatening"]


@pytest.mark.parametrize("pack", ["openai", "mlcommons"])
def test_the_packs_fixed_prompts_stay_short(pack: str) -> None:
    """About 400-750 tokens of a Gemma-style tokenizer, approximated by words."""
    policy: Policy = load_policy(pack).policy
    words = {c.id: len(render_category(policy, c).split()) for c in policy.categories}
    assert all(250 <= n <= 550 for n in words.values()), words
