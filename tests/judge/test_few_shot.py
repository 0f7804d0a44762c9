"""Few-shot judging: examples chosen per item by similarity, from the policy's and the user's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fake_llm import FakeLLM, judgement_reply, threat_judgement

from bastion.items import Item
from bastion.judge import LabelledExample, LLMJudge
from bastion.judge.openai_backend import OpenAIBackend
from bastion.policy import LoadedPolicy

pytestmark = pytest.mark.slow  # loads the real encoder
CATEGORY = "harassment/threatening"
BUS = "I know which bus you take home. Tomorrow you won't get off it in one piece."


def test_examples_are_the_nearest_of_each_kind_and_include_the_users(
    starter: LoadedPolicy, make_backend: Callable[..., OpenAIBackend]
) -> None:
    mine = [
        LabelledExample("I'll be waiting outside your school gate with a bat", CATEGORY, True),
        LabelledExample("The bus was late again, I could scream", CATEGORY, False),
        LabelledExample("a fluffy kitten photo", "other-category", True),
    ]
    judge = LLMJudge(starter, make_backend(), few_shot=2, examples=mine)
    category = starter.policy.category(CATEGORY)
    user = judge._user(Item(text="waiting by your bus stop tomorrow, you'll regret it"), category)
    shown = [line for line in user.splitlines() if line.startswith("Content: ")]
    assert len(shown) == 2
    assert sum(line.endswith("\u2192 violates") for line in shown) == 1  # one of each kind
    assert any("bus you take home" in line for line in shown)  # the nearest positive
    assert any("The bus was late again" in line for line in shown)  # the user's nearest negative
    assert "kitten" not in user  # another category's example is never shown
    # The fixed prompt then carries no examples, so it is the same for every item.
    assert "## Examples" not in judge.system_prompt(CATEGORY)
    assert user.index("## Examples") < user.index("<content>")


def test_an_item_is_never_its_own_example(
    starter: LoadedPolicy, make_backend: Callable[..., OpenAIBackend], fake_llm: FakeLLM
) -> None:
    judge = LLMJudge(starter, make_backend(), few_shot=4)
    fake_llm.script(judgement_reply(threat_judgement()))
    judge.judge([BUS], [CATEGORY])
    sent = fake_llm.requests[0]["messages"][1]["content"]
    assert sent.count(BUS) == 1  # only as the content to judge
