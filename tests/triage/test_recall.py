"""Risk recall: every channel finds what it is for, items record their channels, bad lines are
named and the rest of the pool is still recalled."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.banks.embeddings import EmbeddingBank
from bastion.banks.entries import Entry, Label
from bastion.banks.registry import Banks
from bastion.batch.inputs import open_input
from bastion.errors import InputError
from bastion.moderator import Moderator
from bastion.triage.rank import CHANNELS
from bastion.triage.recall import RecallSettings, recall, rrf
from scam_texts import BENIGN, LOOKALIKES, PARAPHRASES, SCAM


@pytest.fixture(scope="module")
def moderator() -> Moderator:
    return Moderator("openai")


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingBank:
    path = tmp_path_factory.mktemp("banks") / "crypto-scam"
    bank = EmbeddingBank.create(path, "crypto-scam", {})
    label = Label("fraud", severity=3, source="trust-and-safety")
    entries = [Entry(f"scam-{i}", "embedding", t, label) for i, t in enumerate(SCAM)]
    entries += [
        Entry(f"fine-{i}", "embedding", t, Label("fraud", 0), negative=True)
        for i, t in enumerate(LOOKALIKES)
    ]
    return bank.add(entries)


def _pool(tmp_path: Path, lines: list[object]) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", "utf-8")
    return path


def _lines() -> list[object]:
    rows: list[object] = []
    for i, t in enumerate(PARAPHRASES):
        rows.append({"id": f"para-{i}", "text": t, "author": f"a{i}", "reach": 1000 * (i + 1)})
    for i, t in enumerate(BENIGN + LOOKALIKES):
        rows.append({"id": f"benign-{i}", "text": t, "author": f"b{i}"})
    rows.append({"id": "threat", "text": "I will find you and kill you tonight", "reach": 50})
    rows.append({"id": "no-text", "author": "x"})  # neither text nor media
    return rows


def test_each_channel_finds_its_items_and_bad_lines_are_named(
    tmp_path: Path, moderator: Moderator, bank: EmbeddingBank
) -> None:
    result = recall(open_input(_pool(tmp_path, _lines())), moderator, banks=[bank], settings=None)
    assert len(result.errors) == 1 and "pool.jsonl:" in result.errors[0]
    assert "missing the 'text' field" in result.errors[0]
    n_items = len(PARAPHRASES) + len(BENIGN) + len(LOOKALIKES) + 1
    assert len(result.ids) == n_items and result.scores.shape == (n_items, len(CHANNELS))

    found = {c.item_id: c for c in result.candidates}
    for i in range(len(PARAPHRASES)):
        assert "embedding" in found[f"para-{i}"].channels
    assert not any(k.startswith("benign") and "embedding" in c.channels for k, c in found.items())
    # The paraphrases lead the embedding channel's order; the threat leads the classifier's.
    assert set(result.order("embedding")[: len(PARAPHRASES)]) == {
        f"para-{i}" for i in range(len(PARAPHRASES))
    }
    assert result.order("classifier")[0] == "threat" and "classifier" in found["threat"].channels
    para = found["para-2"]
    assert para.reach == 3000 and para.author == "a2" and para.severity["violence"] >= 1
    assert 0 < para.distances["embedding"] < 0.5 and para.text == PARAPHRASES[2]
    # Merged, both kinds of violation come before every benign item.
    merged = result.order()
    last_bad = max(merged.index(k) for k in [*found.keys()] if not k.startswith("benign"))
    assert all(merged.index(f"benign-{i}") > last_bad for i in range(3))
    assert result.hit_counts()["embedding"] == len(PARAPHRASES)


def test_an_author_posting_a_pattern_of_borderline_items_surfaces(
    tmp_path: Path, moderator: Moderator, bank: EmbeddingBank
) -> None:
    # Each post alone is only near the scam; four of them from one account are a pattern.
    borderline = [
        "crypto giveaway season is here, stay tuned for my wallet address",
        "anyone want free bitcoin? more details soon",
        "sending my followers a special ethereum bonus this week",
        "double rewards for everyone who trusts me with their coins",
    ]
    rows: list[object] = [
        {"id": f"pattern-{i}", "text": t, "author": "pattern"} for i, t in enumerate(borderline)
    ]
    rows += [{"id": f"benign-{i}", "text": t, "author": "calm"} for i, t in enumerate(BENIGN)]
    pool = open_input(_pool(tmp_path, rows))
    strict = RecallSettings(embedding_min_similarity=0.95, classifier_threshold=0.99)
    without = recall(pool, moderator, banks=[bank], settings=strict)
    source_col = CHANNELS.index("source")
    pattern_rows = [without.ids.index(f"pattern-{i}") for i in range(4)]
    calm_rows = [without.ids.index(f"benign-{i}") for i in range(len(BENIGN))]
    # The author's aggregate sits above the calm author's on every item.
    assert (
        without.scores[pattern_rows, source_col].min() > without.scores[calm_rows, source_col].max()
    )
    threshold = float(without.scores[pattern_rows, source_col].min()) - 1e-6
    surfaced = recall(
        pool,
        moderator,
        banks=[bank],
        settings=RecallSettings(
            embedding_min_similarity=0.95,
            classifier_threshold=0.99,
            source_threshold=threshold,
            source_item_floor=-1.0,
        ),
    )
    found = {c.item_id for c in surfaced.candidates if "source" in c.channels}
    assert found == {f"pattern-{i}" for i in range(4)}


def test_banks_of_every_kind_go_in_one_list_and_a_channels_best_bank_wins(
    tmp_path: Path, moderator: Moderator, bank: EmbeddingBank
) -> None:
    banks = Banks(tmp_path)
    label = Label("fraud", severity=3)
    pics = banks.create("pics", "hash")
    loose = banks.create("loose", "text", {"threshold": 0.3})
    loose = loose.add([Entry("near", "text", SCAM[0] + " act now before it is gone", label)])
    exact = banks.create("exact", "text").add([Entry("copy", "text", SCAM[0], label)])
    rows = [{"id": "copy", "text": SCAM[0]}, {"id": "calm", "text": BENIGN[0]}]
    result = recall(open_input(_pool(tmp_path, rows)), moderator, banks=[pics, loose, exact, bank])
    found = {c.item_id: c for c in result.candidates}
    copy = found["copy"]
    assert copy.channels["text"] == 1.0 and copy.distances["text"] == 0.0  # the exact bank
    assert "embedding" in copy.channels and "hash" not in copy.channels  # no media to hash
    assert "calm" not in found or "text" not in found["calm"].channels


def test_a_pool_with_an_id_twice_is_refused(tmp_path: Path, moderator: Moderator) -> None:
    pool = open_input(_pool(tmp_path, [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]))
    with pytest.raises(InputError, match="'a' appears more than once"):
        recall(pool, moderator)


def test_rrf_rewards_agreement_and_ignores_channels_without_scores() -> None:
    scores = np.array(
        [
            [np.nan, 0.9, 0.1, np.nan, np.nan],  # ranks 1 and 3
            [np.nan, 0.5, 0.8, np.nan, np.nan],  # ranks 2 and 1: agreement wins
            [np.nan, 0.4, 0.5, np.nan, np.nan],  # ranks 3 and 2
            [np.nan, 0.3, np.nan, np.nan, np.nan],  # rank 4 on one channel, nothing elsewhere
        ]
    )
    fused = rrf(scores)
    assert fused[1] > fused[0] > fused[2] > fused[3] > 0
    assert fused[3] == pytest.approx(1 / (60 + 4))
