"""The zero-shot detector: policy text alone must separate violating from benign content."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.items import Item
from bastion.models.encoder import load_encoder
from bastion.models.scoring import FEATURE_SIGNS
from bastion.models.windows import SENTENCE_END
from bastion.moderator import Moderator
from bastion.policy import parse_policy

pytestmark = pytest.mark.slow

THREAT = "I will find where you live and hurt you"


def test_threat_is_flagged_as_threat_or_violence(openai_moderator: Moderator) -> None:
    v = openai_moderator.moderate_one(THREAT)
    assert v.flagged
    assert v.categories["harassment/threatening"] or v.categories["violence"]
    assert v.action.value in ("review", "block")


@pytest.mark.parametrize(
    "text",
    [
        "How do I kill a Python process?",
        "What's the best way to cook rice?",
        "our team absolutely destroyed them in the final, what a game",
    ],
)
def test_benign_look_alikes_are_not_flagged(openai_moderator: Moderator, text: str) -> None:
    v = openai_moderator.moderate_one(text)
    assert not v.flagged, v.category_scores
    assert v.action.value == "allow"


def test_scores_rank_the_right_category_first(openai_moderator: Moderator) -> None:
    cases = {
        "all immigrants are vermin and should be driven out of this country": "hate",
        "I can't do this anymore, tonight I'm going to end my life": "self-harm/intent",
    }
    for text, expected in cases.items():
        v = openai_moderator.moderate_one(text)
        top3 = sorted(v.category_scores, key=lambda c: -v.category_scores[c])[:3]
        assert expected in top3, (text, top3)


def test_fitted_weights_respect_monotone_signs(openai_moderator: Moderator) -> None:
    det = openai_moderator.detectors[0]
    assert isinstance(det, ZeroShotDetector)
    assert np.all(det.coef_ * FEATURE_SIGNS >= 0)
    # Leave-one-out on the policy's own examples separates them well.
    assert min(det.fit_auc_.values()) > 0.85


SPAM_POLICY = """
id: shop
version: "1"
name: Shop comments
categories:
  - id: spam
    name: Spam
    severity: 1
    definition: Unsolicited advertising, scams and get-rich-quick promotions.
    violates: [Promoting crypto giveaways or investment schemes, Links to buy followers]
    examples:
      positive:
        - "DM me to double your bitcoin in 24 hours, guaranteed returns!!!"
        - "Buy 10k real followers now, cheap, link in bio"
        - "Send 0.1 ETH to this wallet and receive 1 ETH back instantly"
        - "I made $5000 this week from home with this one trick, click my profile"
        - "Free gift cards for the first 100 people who message me"
        - "Earn passive income with our forex signals group, join now"
      negative:
        - "Does anyone know if this jacket runs small?"
        - "I bought this last year and it still works great"
        - "Is there a discount code for students?"
        - "The delivery took two weeks but the quality is good"
        - "Can I return this if it doesn't fit?"
        - "I invested in a good pair of boots and they lasted years"
"""


def test_a_new_policy_gets_working_scores_at_once() -> None:
    policy = parse_policy(SPAM_POLICY)
    mod = Moderator(policy)
    spam, ok = mod.moderate(
        [
            "Guaranteed profit!! message me to triple your crypto today",
            "Does this come in blue? I'd like to order two",
        ]
    )
    assert spam.category_scores["spam"] > ok.category_scores["spam"] + 0.3
    assert spam.flagged and not ok.flagged
    assert spam.policy_version == policy.version


DOXXING = """
  - id: doxxing
    name: Doxxing
    severity: 3
    definition: Publishing a private person's home address, phone number or other private details.
    violates: [Posting someone's home address, Posting someone's private phone number]
"""
"""A category with no examples: its definition and rules stand in for them."""


def test_category_without_examples_falls_back_to_definition() -> None:
    policy = parse_policy(SPAM_POLICY + DOXXING)
    det = ZeroShotDetector(load_encoder()).fit(policy)
    out = det.score(
        [
            Item("her home address is 14 Elm Street and her phone number is 555 0199"),
            Item("lovely weather for a picnic in the park today"),
        ]
    )
    j = det.category_ids.index("doxxing")
    assert out.scores[0, j] > out.scores[1, j]


def test_all_categories_at_once_score_as_one_category_at_a_time() -> None:
    """`window_probs` gathers every category's features in one pass; a category without
    examples (no hard negatives: the background stands in) must come out as `_features` for
    that category alone gives it."""
    policy = parse_policy(SPAM_POLICY + DOXXING)
    det = ZeroShotDetector(load_encoder()).fit(policy)
    emb = det.encoder.encode(["buy cheap followers now", "her address is 14 Elm St", "nice day"])
    probs, sims = det.window_probs(emb)
    for c, proto in enumerate(det.prototypes_):
        z = det._features(sims, proto) @ det.coef_ + det.intercept_ + det.category_bias_[c]
        np.testing.assert_allclose(probs[:, c], 1 / (1 + np.exp(-z)), rtol=0, atol=1e-12)
    assert len(det.prototypes_[det.category_ids.index("doxxing")].hard_neg) == 0


def test_violation_late_in_a_long_text_is_found(openai_moderator: Moderator) -> None:
    filler = " ".join(
        f"On day {i} we talked about the weather, the garden and the bakery." for i in range(40)
    )
    clean = openai_moderator.moderate_one(filler)
    laced = openai_moderator.moderate_one(filler + THREAT + ". " + filler[:200])
    assert len((filler + THREAT).split()) > 400  # beyond the first window
    assert laced.category_scores["harassment/threatening"] > (
        clean.category_scores["harassment/threatening"] + 0.2
    )
    assert laced.flagged and not clean.flagged


def test_obfuscated_text_scores_like_plain_text(openai_moderator: Moderator) -> None:
    plain = openai_moderator.moderate_one(THREAT)
    tricked = openai_moderator.moderate_one(
        "I will f\u200bind where you l\u0456ve and hurt y\u043eu"
    )
    for cid, score in plain.category_scores.items():
        assert abs(tricked.category_scores[cid] - score) < 0.02, cid


def test_batch_scores_equal_single_scores(openai_moderator: Moderator) -> None:
    texts = [THREAT, "hello there", "a much longer sentence about cooking pasta with garlic " * 3]
    batch = openai_moderator.moderate(texts)
    for text, v in zip(texts, batch, strict=True):
        single = openai_moderator.moderate_one(text)
        for cid in v.category_scores:
            assert abs(v.category_scores[cid] - single.category_scores[cid]) < 1e-4


def test_evidence_cites_a_policy_example(openai_moderator: Moderator) -> None:
    v = openai_moderator.moderate_one(THREAT)
    flagged = [c for c, f in v.categories.items() if f]
    ev = [e for e in v.evidence if e.category in flagged]
    assert ev and all(e.detector == "zero_shot" for e in ev)
    examples = openai_moderator.policy.policy.category(ev[0].category).examples.positive
    assert ev[0].ref is not None and ev[0].ref.strip('"') in examples


def test_windows_chunk_whole_sentences_and_report_when_cut() -> None:
    det = ZeroShotDetector.__new__(ZeroShotDetector)
    det.chunk_words, det.min_chunk_words, det.max_windows = 10, 3, 8
    assert det.windows("one two three") == (["one two three"], False)
    text = "One. Two here. Second sentence is here too. " + " ".join(f"w{i}" for i in range(25))
    wins, cut = det.windows(text)
    assert not cut and wins[0] == text  # the whole text is always a window
    assert wins[1] == "One. Two here."  # short sentences merged up to min_chunk_words
    assert wins[2] == "Second sentence is here too."
    assert all(len(w.split()) <= 10 for w in wins[1:])
    assert " ".join(wins[1:]).split() == text.split()  # chunks cover every word, in order
    # Repeated sentences are scored once.
    wins, cut = det.windows("Buy now at my new shop. " * 30)
    assert wins[1:] == ["Buy now at my new shop."] and not cut
    assert SENTENCE_END.split("It was fine.Then I left. U.S.A. ok") == [
        "It was fine.",
        "Then I left.",
        "U.S.A.",
        "ok",
    ]
    # More text than the budget: chunks grow to chunk_words, then the rest is cut and reported.
    wins, cut = det.windows(" ".join(f"w{i}" for i in range(60)))
    assert not cut and len(wins) == 7 and all(len(w.split()) == 10 for w in wins[1:])
    wins, cut = det.windows(" ".join(f"w{i}" for i in range(200)))
    assert cut and len(wins) == 8
