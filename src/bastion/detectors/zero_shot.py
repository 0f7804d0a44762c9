"""Zero-shot detector: scores every category of any policy from the policy text alone, no training data.

How it works. Each category's positive examples (or, if it has none, its definition and rules)
become prototypes of what violates; its negative examples plus a shipped corpus of everyday
content become prototypes of what does not. A text is described by its similarity to each side
(`bastion.models.scoring.contrastive_features`), and one small logistic model, shared by all
categories, turns those similarities into a probability. That model is fitted on the policy
itself by leave-one-out: each example is scored against the other examples, so the weights learn
how far "near a positive, far from the negatives" must go before it means "violates", without a
single external label. A user who writes a new policy YAML gets working scores at once.

Long texts are also scored in chunks of whole sentences (the encoder averages over what it reads,
so one violating sentence in a long post would be diluted); an item's score for a category is its
highest-scoring window, because one violating passage is enough.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from bastion.detectors.base import DetectorOutput, Evidence
from bastion.items import Item
from bastion.models.encoder import TextEncoder
from bastion.models.scoring import (
    FEATURE_SIGNS,
    contrastive_features,
    fit_monotone_logistic,
    sigmoid,
)
from bastion.policy import LoadedPolicy

# Sentence ends: punctuation then space, a newline, or "end.Next" typed without a space.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n+|(?<=[a-z][.!?])(?=[A-Z])")


@lru_cache(maxsize=1)
def background_texts() -> tuple[str, ...]:
    """Everyday benign content (written for Bastion) that anchors 'what normal looks like'."""
    text = resources.files("bastion.data").joinpath("background.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class _Prototypes:
    pos: np.ndarray  # indices into the bank of embedded texts
    hard_neg: np.ndarray
    background: np.ndarray
    rules: np.ndarray
    from_examples: bool


class ZeroShotDetector:
    """Policy-only scorer. `fit(policy)` builds prototypes and the shared calibration; `score` is batch."""

    name = "zero_shot"

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        k: int = 3,
        chunk_words: int = 40,
        min_chunk_words: int = 6,
        max_windows: int = 48,
        evidence_min_score: float = 0.3,
        regularization: float = 1e-4,
        background: Sequence[str] | None = None,
    ) -> None:
        self.encoder = encoder
        self.k = k
        self.chunk_words = chunk_words
        self.min_chunk_words = min_chunk_words
        self.max_windows = max_windows
        self.evidence_min_score = evidence_min_score
        self.regularization = regularization
        self.background = background

    # -- fitting ---------------------------------------------------------------------------

    def fit(self, policy: LoadedPolicy) -> ZeroShotDetector:
        background = list(self.background if self.background is not None else background_texts())
        bank: list[str] = []
        index: dict[str, int] = {}

        def add(texts: Sequence[str]) -> np.ndarray:
            ids = []
            for t in texts:
                if t not in index:
                    index[t] = len(bank)
                    bank.append(t)
                ids.append(index[t])
            return np.array(ids, dtype=np.int64)

        bg = add(background)
        protos: list[_Prototypes] = []
        for cat in policy.policy.categories:
            rules = add([cat.definition, *[r.text for r in cat.violates]])
            has_examples = bool(cat.examples.positive)
            pos = add(cat.examples.positive) if has_examples else rules
            hard = add(cat.examples.negative)
            protos.append(_Prototypes(pos, hard, bg, rules, has_examples))

        self.bank_texts_ = bank
        self.bank_ = self.encoder.encode(bank)
        self.category_ids = list(policy.policy.category_ids)
        self.prototypes_ = protos
        self.policy_version_ = policy.version

        sims = self.bank_ @ self.bank_.T
        np.fill_diagonal(sims, -np.inf)  # leave-one-out: an example never matches itself
        feats, labels, weights, cats = [], [], [], []
        for c, proto in enumerate(protos):
            if not proto.from_examples:
                continue  # a category with no examples borrows the weights the others learn
            groups = [(proto.pos, 1.0, 0.5), (proto.hard_neg, 0.0, 0.25), (bg, 0.0, 0.25)]
            for rows, label, share in groups:
                if len(rows) == 0:
                    continue
                feats.append(self._features(sims[rows], proto))
                labels.append(np.full(len(rows), label))
                weights.append(np.full(len(rows), share / len(rows)))
                cats.append(np.full(len(rows), c))
        if not feats:
            # No category has examples: a fixed mapping that favours precision.
            self.coef_ = np.array([4.0, 4.0, -4.0, -4.0, 2.0])
            self.intercept_ = -1.0
            self.category_bias_ = np.zeros(len(protos))
            self.fit_auc_: dict[str, float] = {}
            return self
        X, y, cat_of = np.vstack(feats), np.concatenate(labels), np.concatenate(cats)
        # Shared slopes (few examples per category) plus a bias per category (regularised
        # towards 0), so a category whose examples look like everyday text needs more to fire.
        onehot = (cat_of[:, None] == np.arange(len(protos))[None, :]).astype(np.float64)
        signs = np.r_[FEATURE_SIGNS, np.zeros(len(protos))]
        coef, self.intercept_ = fit_monotone_logistic(
            np.hstack([X, onehot]), y, np.concatenate(weights), signs, l2=self.regularization
        )
        self.coef_ = coef[: X.shape[1]]
        self.category_bias_ = coef[X.shape[1] :]
        z = X @ self.coef_ + self.intercept_ + self.category_bias_[cat_of]
        self.fit_auc_ = {
            self.category_ids[c]: auc for c, auc in _per_category_auc(z, y, cat_of).items()
        }
        return self

    def _features(self, sims: np.ndarray, proto: _Prototypes) -> np.ndarray:
        return contrastive_features(
            sims[:, proto.pos],
            sims[:, proto.hard_neg],
            sims[:, proto.background],
            sims[:, proto.rules],
            self.k,
        )

    # -- scoring ---------------------------------------------------------------------------

    def windows(self, text: str) -> tuple[list[str], bool]:
        """Texts to embed for one item; True when the item was too long to score completely.

        A text of up to `chunk_words` words is one window. A longer one is scored as a whole (its opening, as far as the
        encoder reads) *and* in chunks of whole sentences, because mean pooling dilutes one
        threatening sentence among a hundred harmless ones. Chunks are as small as the window
        budget allows (one sentence each, short ones merged up to `min_chunk_words`) and grow up
        to `chunk_words` for long texts, so the whole text is covered; identical chunks are
        scored once.
        """
        words = text.split()
        if len(words) <= self.chunk_words:
            return [text], False  # short posts: dilution is small, one window is enough
        pieces: list[list[str]] = []
        for sentence in _SENTENCE_END.split(text):
            sw = sentence.split()
            pieces.extend(sw[i : i + self.chunk_words] for i in range(0, len(sw), self.chunk_words))
        budget = self.max_windows - 1
        target = min(self.chunk_words, max(self.min_chunk_words, -(-len(words) // budget)))
        chunks: list[str] = []
        current: list[str] = []
        for piece in pieces:
            if current and len(current) + len(piece) > max(target, self.min_chunk_words * 2):
                chunks.append(" ".join(current))
                current = []
            current.extend(piece)
            if len(current) >= target:
                chunks.append(" ".join(current))
                current = []
        if current:
            chunks.append(" ".join(current))
        unique = list(dict.fromkeys(c for c in chunks if c != text))
        return [text, *unique[:budget]], len(unique) > budget

    def score(
        self, items: Sequence[Item], progress: Callable[[int], None] | None = None
    ) -> DetectorOutput:
        n, n_cat = len(items), len(self.category_ids)
        scores = np.full((n, n_cat), np.nan)
        evidence: list[list[Evidence]] = [[] for _ in range(n)]
        cut_short = np.zeros(n, dtype=bool)
        texts: list[str] = []
        owner: list[int] = []
        for i, item in enumerate(items):
            if item.is_blank:
                continue
            wins, cut = self.windows(item.scoring_text)
            cut_short[i] = cut
            texts.extend(wins)
            owner.extend([i] * len(wins))
        if not texts:
            return DetectorOutput(scores, evidence, cut_short)
        emb = self.encoder.encode(texts, progress=progress)
        sims = emb @ self.bank_.T
        owner_arr = np.array(owner)
        win_probs = np.empty((len(texts), n_cat))
        for c, proto in enumerate(self.prototypes_):
            z = self._features(sims, proto) @ self.coef_ + self.intercept_ + self.category_bias_[c]
            win_probs[:, c] = sigmoid(z)
        # Item score = best window, per category (vectorised group-max).
        best_win = np.full((n, n_cat), -1, dtype=np.int64)
        for c in range(n_cat):
            order = np.lexsort((win_probs[:, c], owner_arr))
            last = np.r_[owner_arr[order][1:] != owner_arr[order][:-1], True]
            rows = order[last]
            scores[owner_arr[rows], c] = win_probs[rows, c]
            best_win[owner_arr[rows], c] = rows
        for i, c in zip(*np.nonzero(scores >= self.evidence_min_score), strict=True):
            evidence[i].append(self._evidence(int(c), float(scores[i, c]), sims[best_win[i, c]]))
        for ev in evidence:
            ev.sort(key=lambda e: -e.score)
        return DetectorOutput(scores, evidence, cut_short)

    def _evidence(self, c: int, score: float, sims: np.ndarray) -> Evidence:
        proto = self.prototypes_[c]
        p = proto.pos[int(np.argmax(sims[proto.pos]))]
        negs = np.concatenate([proto.hard_neg, proto.background])
        q = negs[int(np.argmax(sims[negs]))]
        closest = _quote(self.bank_texts_[p])
        unlike = _quote(self.bank_texts_[q])
        detail = (
            f"closest violating example {closest} (similarity {sims[p]:.2f}); "
            f"closest non-violating {unlike} (similarity {sims[q]:.2f})"
        )
        return Evidence(self.name, self.category_ids[c], round(score, 4), detail, ref=closest)


def _quote(text: str, limit: int = 80) -> str:
    return '"' + (text if len(text) <= limit else text[: limit - 1] + "…") + '"'


def _per_category_auc(z: np.ndarray, y: np.ndarray, cats: np.ndarray) -> dict[int, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for c in np.unique(cats):
        m = cats == c
        if 0 < y[m].sum() < m.sum():
            out[int(c)] = float(roc_auc_score(y[m], z[m]))
    return out
