"""Embedding banks: versions on disk, contrastive scores and matches with negatives, the auto
index as the bank grows, the empty bank, and refusals (wrong encoder, dimensions, NaN, ids)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from bastion.banks import embeddings
from bastion.banks.embeddings import EmbeddingBank
from bastion.banks.entries import Entry, Label
from bastion.banks.files import CURRENT, BankError, read_jsonl
from bastion.banks.vector_index import VectorIndex
from bastion.models.encoder import DEFAULT_ENCODER, SHIPPED_ONNX_ENCODER

DIM = 64


class BagOfWordsEncoder:
    """A stand-in encoder: each word a fixed random direction, a text the normalised sum, so
    texts sharing words are similar. Counts its calls."""

    def __init__(self, name: str = "bag-of-words", dim: int = DIM) -> None:
        self.name = name
        self.dim = dim
        self.max_length = 256
        self.calls = 0

    def encode(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
                out[i] += np.random.default_rng(seed).standard_normal(self.dim)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


def entry(id: str, text: str = "", negative: bool = False, category: str = "violence") -> Entry:
    return Entry(
        id=id,
        signal="embedding",
        value=text or id,
        label=Label(category, severity=3, source="test"),
        negative=negative,
    )


def unit(v: np.ndarray) -> np.ndarray:
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def axis(i: int) -> np.ndarray:
    v = np.zeros(DIM)
    v[i] = 1.0
    return v


@pytest.fixture
def encoder() -> BagOfWordsEncoder:
    return BagOfWordsEncoder()


@pytest.fixture
def bank(tmp_path: Path, encoder: BagOfWordsEncoder) -> EmbeddingBank:
    settings = {"encoder": encoder.name, "dim": DIM}
    return EmbeddingBank.create(tmp_path / "threats", "threats", settings, encoder=encoder)


def test_create_commits_an_empty_first_version(tmp_path: Path) -> None:
    bank = EmbeddingBank.create(tmp_path / "b", "b", {}, "default encoder")
    assert bank.kind == "embedding" and bank.version == 1 and bank.entries == ()
    assert bank.manifest.kind == "embedding" and bank.manifest.description == "default encoder"
    assert bank.settings.encoder == "all-MiniLM-L6-v2" and bank.dim == 384
    assert set(bank.manifest.files) == {"entries.jsonl", "positives.npy", "negatives.npy"}
    assert bank.index_kinds == {"positives": None, "negatives": None}
    with pytest.raises(BankError, match="already exists"):
        EmbeddingBank.create(tmp_path / "b", "b", {})
    with pytest.raises(BankError, match="give the dimension"):
        EmbeddingBank.create(tmp_path / "c", "c", {"encoder": "my-encoder"})
    given = EmbeddingBank.create(tmp_path / "f", "f", {}, encoder=BagOfWordsEncoder(dim=16))
    assert given.settings.encoder == "bag-of-words" and given.dim == 16
    with pytest.raises(BankError, match="setting k"):
        EmbeddingBank.create(tmp_path / "d", "d", {"k": 0})
    with pytest.raises(BankError, match="setting index"):
        EmbeddingBank.create(tmp_path / "e", "e", {"index": "annoy"})


def test_add_embeds_texts_and_stores_aligned_vectors(
    bank: EmbeddingBank, encoder: BagOfWordsEncoder
) -> None:
    new = bank.add(
        [
            entry("p1", "i will hurt you tonight"),
            entry("n1", "i will beat you tonight at chess", negative=True),
            entry("p2", "you will pay for this with blood"),
        ]
    )
    assert new.version == 2 and [e.id for e in new.entries] == ["p1", "n1", "p2"]
    assert bank.version == 1 and bank.entries == ()  # the old object answers from its version
    directory = new.path / (new.path / CURRENT).read_text().strip()
    assert [r["id"] for r in read_jsonl(directory / "entries.jsonl")] == ["p1", "n1", "p2"]
    positives = np.load(directory / "positives.npy")
    negatives = np.load(directory / "negatives.npy")
    assert positives.dtype == np.float32 and positives.shape == (2, DIM)
    expected = encoder.encode(["i will hurt you tonight", "you will pay for this with blood"])
    np.testing.assert_allclose(positives, expected, atol=1e-6)
    np.testing.assert_allclose(negatives, encoder.encode(["i will beat you tonight at chess"]))
    assert {"positives.faiss", "positives.json", "negatives.faiss"} <= set(new.manifest.files)
    assert new.manifest.entries == 3
    assert new.index_kinds == {"positives": "exact", "negatives": "exact"}


def test_contrastive_score_puts_a_near_positive_above_its_negative_look_alike(
    bank: EmbeddingBank,
) -> None:
    threat, chess = unit(axis(0) + 0.3 * axis(1)), unit(axis(0) + 0.3 * axis(2))
    bank = bank.add(
        [entry("threat"), entry("other"), entry("chess", negative=True)],
        vectors=np.vstack([threat, unit(axis(5)), chess]),
    )
    items = np.vstack([unit(axis(0) + 0.5 * axis(1)), unit(axis(0) + 0.5 * axis(2))])
    result = bank.score(items, k=1)
    assert len(result) == 2 and result.scores[0] > 0 > result.scores[1]
    assert result.positive_ids[0] == ["threat"] and result.positive_ids[1] == ["threat"]
    assert result.negative_id == ["chess", "chess"]
    assert result.negative_similarity[1] > result.positive_similarities[1, 0]
    np.testing.assert_allclose(result.positive_similarities[0, 0], float(items[0] @ threat[0]))
    # With k=2 both positives are listed, nearest first, rows pointing into `entries`.
    wide = bank.score(items, k=2)
    assert wide.positive_ids[0] == ["threat", "other"]
    assert [bank.entries[r].id for r in wide.positive_rows[0]] == ["threat", "other"]


def test_match_reports_entries_above_the_threshold_unless_a_negative_is_nearer(
    bank: EmbeddingBank,
) -> None:
    threat, chess = unit(axis(0) + 0.3 * axis(1)), unit(axis(0) + 0.3 * axis(2))
    bank = bank.add(
        [entry("threat"), entry("chess", negative=True)], vectors=np.vstack([threat, chess])
    )
    near_threat = unit(axis(0) + 0.4 * axis(1))
    near_chess = unit(axis(0) + 0.4 * axis(2))
    far = unit(axis(9))
    matches = bank.match(np.vstack([near_threat, near_chess, far]), min_similarity=0.5)
    assert [[m.entry_id for m in ms] for ms in matches] == [["threat"], [], []]
    found = matches[0][0]
    assert found.bank == "threats" and found.bank_version == bank.version
    assert found.signal == "embedding" and not found.negative
    assert found.label == Label("violence", severity=3, source="test")
    assert found.distance == pytest.approx(1.0 - float(near_threat[0] @ threat[0]), abs=1e-5)
    # Without the negative exemplar the look-alike matches (it is similar enough).
    only = bank.remove(["chess"])
    assert [m.entry_id for m in only.match(near_chess, min_similarity=0.5)[0]] == ["threat"]
    # The bank's own threshold applies by default (0.8).
    cos_076 = unit(axis(0) + 0.3 * axis(1) + 0.9 * axis(4))
    assert bank.match(cos_076)[0] == []
    assert [m.entry_id for m in bank.match(cos_076, min_similarity=0.7)[0]] == ["threat"]


def test_an_empty_bank_answers_no_opinion(bank: EmbeddingBank) -> None:
    items = unit(np.ones((3, DIM)))
    result = bank.score(items)
    assert np.isnan(result.scores).all() and result.positive_ids == [[], [], []]
    assert result.negative_id == [None] * 3
    assert bank.match(items) == [[], [], []]
    # Negatives alone are still no positives; removing the last positive gets back here.
    only_negatives = bank.add([entry("fine", negative=True)], vectors=items[:1])
    assert np.isnan(only_negatives.score(items).scores).all()
    one = only_negatives.add([entry("bad")], vectors=unit(axis(3)))
    assert np.isfinite(one.score(items).scores).all()
    emptied = one.remove(["bad"])
    assert np.isnan(emptied.score(items).scores).all() and emptied.match(items) == [[]] * 3


def test_remove_keeps_vectors_aligned_and_refuses_unknown_ids(bank: EmbeddingBank) -> None:
    vectors = unit(np.eye(DIM)[:6])
    bank = bank.add([entry(f"e{i}", negative=i == 2) for i in range(6)], vectors=vectors)
    smaller = bank.remove(["e1", "e2"])
    assert [e.id for e in smaller.entries] == ["e0", "e3", "e4", "e5"]
    assert smaller.index_kinds["negatives"] is None
    result = smaller.score(vectors[[0, 3, 4, 5]], k=1)
    assert [ids[0] for ids in result.positive_ids] == ["e0", "e3", "e4", "e5"]
    np.testing.assert_allclose(result.positive_similarities[:, 0], 1.0, atol=1e-5)
    with pytest.raises(BankError, match="has no entries 'nope'"):
        smaller.remove(["e0", "nope"])
    assert [e.id for e in EmbeddingBank.open(smaller.path).entries] == ["e0", "e3", "e4", "e5"]


def test_a_failed_add_leaves_the_bank_as_it_was(
    bank: EmbeddingBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    bank = bank.add([entry("a")], vectors=unit(axis(0)))

    def crash(self: VectorIndex, directory: Path, name: str) -> list[Path]:
        (directory / f"{name}.faiss").write_bytes(b"half an index")
        raise OSError("disk full")

    monkeypatch.setattr(VectorIndex, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        bank.add([entry("b")], vectors=unit(axis(1)))
    monkeypatch.undo()
    again = EmbeddingBank.open(bank.path)
    assert again.version == 2 and [e.id for e in again.entries] == ["a"]
    assert not list(bank.path.glob(".staging-*"))


def test_a_stale_bank_object_builds_on_the_current_version(bank: EmbeddingBank) -> None:
    first = bank.add([entry("a")], vectors=unit(axis(0)))
    second = bank.add([entry("b")], vectors=unit(axis(1)))  # `bank` is still version 1
    assert second.version == 3 and [e.id for e in second.entries] == ["a", "b"]
    with pytest.raises(BankError, match="already has entries 'a'"):
        first.add([entry("a")], vectors=unit(axis(2)))


def test_the_index_follows_the_banks_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng.standard_normal((800, DIM)))
    settings = {"encoder": "bag-of-words", "dim": DIM, "exact_max": 50, "hnsw_max": 300}
    bank = EmbeddingBank.create(tmp_path / "grow", "grow", settings)
    kinds = []
    for start, stop in ((0, 40), (40, 200), (200, 800)):
        bank = bank.add([entry(f"e{i}") for i in range(start, stop)], vectors=vectors[start:stop])
        kinds.append(bank.index_kinds["positives"])
    assert kinds == ["exact", "hnsw", "ivfpq"]
    reopened = EmbeddingBank.open(bank.path)
    assert reopened.index_kinds["positives"] == "ivfpq"
    found = reopened.score(vectors, k=1)
    assert np.mean([ids[0] == f"e{i}" for i, ids in enumerate(found.positive_ids)]) > 0.99
    # Search settings can be changed per bank object without a new version.
    tuned = reopened.with_search(nprobe=1)
    assert tuned.version == reopened.version
    assert tuned._positive_index is not None and tuned._positive_index.params.nprobe == 1


def test_per_source_aggregate_surfaces_a_pattern_of_borderline_items(
    bank: EmbeddingBank,
) -> None:
    bank = bank.add(
        [entry("p"), entry("n", negative=True)], vectors=np.vstack([unit(axis(0)), unit(axis(1))])
    )
    borderline = unit(0.7 * axis(0) + 0.4 * axis(1) + 0.5 * axis(7))  # cosine 0.74 to "p"
    strong = unit(axis(0) + 0.2 * axis(8))
    benign = unit(axis(1) + 0.5 * axis(9))
    items = np.vstack([borderline] * 6 + [strong] + [benign] * 5)
    authors = ["pattern"] * 6 + ["spike"] * 6
    per_item = bank.score(items, k=1).scores
    assert per_item[6] > per_item[0] > 0 > per_item[7]
    assert bank.match(borderline) == [[]]  # no single borderline item matches
    by_source = bank.score_sources(items, authors, method="topk_mean", k=5)
    assert by_source.sources.tolist() == ["pattern", "spike"]
    assert by_source.scores[0] > by_source.scores[1]


def test_bad_input_is_refused_with_a_clear_message(
    tmp_path: Path, bank: EmbeddingBank, encoder: BagOfWordsEncoder
) -> None:
    with pytest.raises(BankError, match="was embedded with encoder 'bag-of-words'"):
        EmbeddingBank.open(bank.path, BagOfWordsEncoder(name="other-encoder"))
    with pytest.raises(BankError, match=r"\(64 dimensions\), not 'bag-of-words' \(32\)"):
        EmbeddingBank.open(bank.path, BagOfWordsEncoder(dim=32))
    with pytest.raises(BankError, match="8 dimensions"):
        bank.score(np.ones((2, 8), dtype=np.float32))
    with pytest.raises(BankError, match="NaN or infinity"):
        bank.match(np.full((1, DIM), np.nan))
    with pytest.raises(BankError, match="NaN or infinity"):
        bank.add([entry("x")], vectors=np.full((1, DIM), np.inf))
    with pytest.raises(BankError, match="given more than once"):
        bank.add([entry("x"), entry("x")])
    with pytest.raises(BankError, match="signal 'pdq'"):
        bank.add([Entry("x", "pdq", "f" * 64, Label("spam"))])
    with pytest.raises(BankError, match="2 entries but 1 vectors"):
        bank.add([entry("x"), entry("y")], vectors=unit(axis(0)))
    with pytest.raises(BankError, match="k must be"):
        bank.score(unit(axis(0)), k=0)
    with pytest.raises(BankError, match="min_similarity"):
        bank.match(unit(axis(0)), min_similarity=2.0)
    with pytest.raises(BankError, match="not an embedding one"):
        from bastion.banks.files import first_manifest, locked, new_version, write_jsonl

        other = tmp_path / "hashes"
        with locked(other), new_version(other, first_manifest("hashes", "hash", {})) as (d, _):
            write_jsonl(d / "entries.jsonl", [])
        EmbeddingBank.open(other)
    assert encoder.calls == 0  # nothing above needed the encoder


def test_the_encoder_is_loaded_only_to_embed_texts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[str] = []
    stand_in = BagOfWordsEncoder()

    def load(name: str) -> BagOfWordsEncoder:
        loaded.append(name)
        return stand_in

    monkeypatch.setattr(embeddings, "_load_encoder", load)
    EmbeddingBank.create(tmp_path / "lazy", "lazy", {"encoder": "bag-of-words", "dim": DIM})
    bank = EmbeddingBank.open(tmp_path / "lazy")
    bank = bank.add([entry("a")], vectors=unit(axis(0)))
    bank.score(unit(axis(0)))
    assert loaded == []
    bank = bank.add([entry("b", "send me your password")])
    assert loaded == ["bag-of-words"]
    assert bank.score_texts(["send me your password now"]).positive_ids[0][0] == "b"
    monkeypatch.setattr(embeddings, "_load_encoder", lambda name: BagOfWordsEncoder(dim=16))
    with pytest.raises(BankError, match="was embedded with encoder"):
        EmbeddingBank.open(tmp_path / "lazy").score_texts(["hello"])


def test_the_default_encoder_runs_on_the_shipped_export_unless_the_runtime_is_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened: list[tuple[str, Path | None]] = []

    def open_encoder(name: str, onnx_dir: Path | None) -> BagOfWordsEncoder:
        opened.append((name, onnx_dir))
        return BagOfWordsEncoder()

    monkeypatch.setattr(embeddings, "_open_encoder", open_encoder)
    monkeypatch.delenv("BASTION_RUNTIME", raising=False)
    embeddings._load_encoder(DEFAULT_ENCODER)
    monkeypatch.setenv("BASTION_RUNTIME", "torch")
    embeddings._load_encoder(DEFAULT_ENCODER)
    assert opened == [(DEFAULT_ENCODER, SHIPPED_ONNX_ENCODER), (DEFAULT_ENCODER, None)]


@pytest.mark.slow
def test_real_encoder_scores_a_threat_above_gaming_talk(tmp_path: Path) -> None:
    bank = EmbeddingBank.create(tmp_path / "threats", "threats", {"min_similarity": 0.7})
    bank = bank.add(
        [
            entry("t1", "I know where you live and I am going to hurt you"),
            entry("t2", "I will find you after school and beat you up"),
            entry("t3", "you will regret this, I am coming for you tonight"),
            entry("g1", "I'm going to destroy you in the next round, noob", negative=True),
            entry("g2", "we will crush the other team tonight", negative=True),
            entry("g3", "killed it at the gym today, beast mode", negative=True),
        ]
    )
    assert bank.encoder.name == "all-MiniLM-L6-v2" and bank.dim == 384
    texts = [
        "I know your address and I'm going to hurt you",
        "gonna destroy you next round lol",
    ]
    result = bank.score_texts(texts)
    assert result.scores[0] > 0 > result.scores[1]
    assert result.positive_ids[0][0] == "t1"
    matches = bank.match_texts(texts)
    assert [m.entry_id for m in matches[0]][:1] == ["t1"] and matches[1] == []
