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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from bastion.detectors.base import BaseDetector, DetectorOutput, Evidence, quote
from bastion.items import Item
from bastion.models.encoder import Encoder
from bastion.models.scoring import (
    FEATURE_SIGNS,
    contrastive_features,
    fit_monotone_logistic,
    group_max,
    grouped_max_and_topk,
    padded_columns,
    sigmoid,
)
from bastion.models.windows import text_windows
from bastion.policy import LoadedPolicy


@lru_cache(maxsize=1)
def background_texts() -> tuple[str, ...]:
    """Everyday benign content (written for Bastion) that anchors 'what normal looks like'."""
    text = resources.files("bastion.data").joinpath("background.txt").read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class Windows:
    """Embedded windows of a batch of items: `owner[k]` is the item that window k belongs to."""

    n_items: int
    owner: np.ndarray
    embeddings: np.ndarray
    cut: np.ndarray


@dataclass
class _Prototypes:
    pos: np.ndarray  # indices into the bank of embedded texts
    hard_neg: np.ndarray
    background: np.ndarray
    rules: np.ndarray
    from_examples: bool


class ZeroShotDetector(BaseDetector):
    """Policy-only scorer. `fit(policy)` builds prototypes and the shared calibration; `score` is batch."""

    name = "zero_shot"

    def __init__(
        self,
        encoder: Encoder,
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

    @property
    def version(self) -> str:
        return self.name + encoder_version(self.encoder)

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
        # Stored transposed and contiguous: `emb @ bank_t_` on a small serving batch took a fifth
        # of the time of `emb @ bank_.T` (0.2 against 1.0 ms for 8 posts and 845 bank texts).
        self.bank_t_ = np.ascontiguousarray(self.bank_.T)
        self.category_ids = list(policy.policy.category_ids)
        self.prototypes_ = protos
        self.groups_ = _feature_groups(protos)
        self.policy_version_ = policy.version

        feats, labels, weights, cats = [], [], [], []
        for c, proto in enumerate(protos):
            if not proto.from_examples:
                continue  # a category with no examples borrows the weights the others learn
            groups = [(proto.pos, 1.0, 0.5), (proto.hard_neg, 0.0, 0.25), (bg, 0.0, 0.25)]
            for rows, label, share in groups:
                if len(rows) == 0:
                    continue
                # Similarities of these rows only (memory grows with examples, not squared).
                sims = self.bank_[rows] @ self.bank_t_
                sims[np.arange(len(rows)), rows] = -np.inf  # leave-one-out: never match itself
                feats.append(self._features(sims, proto))
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
        return text_windows(text, self.chunk_words, self.min_chunk_words, self.max_windows)

    def embed(
        self, items: Sequence[Item], progress: Callable[[int], None] | None = None
    ) -> Windows:
        """Embed every item's windows once (other detectors may reuse them)."""
        texts: list[str] = []
        owner: list[int] = []
        cut_short = np.zeros(len(items), dtype=bool)
        for i, item in enumerate(items):
            if item.is_blank:
                continue
            wins, cut = self.windows(item.scoring_text)
            cut_short[i] = cut
            texts.extend(wins)
            owner.extend([i] * len(wins))
        emb = self.encoder.encode(texts, progress=progress) if texts else np.zeros((0, 1))
        return Windows(len(items), np.array(owner, dtype=np.int64), emb, cut_short)

    def window_probs(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-window probabilities (n_windows, n_categories) and similarities to the bank."""
        sims = emb @ self.bank_t_
        groups = self.groups_
        pos_max, pos_topk = grouped_max_and_topk(sims, *groups["pos"], self.k)
        _, background = grouped_max_and_topk(sims, *groups["background"], self.k)
        if background.shape[1] != pos_max.shape[1]:  # one background shared by every category
            background = np.repeat(background, pos_max.shape[1], axis=1)
        _, hard = grouped_max_and_topk(sims, *groups["hard_neg"], self.k)
        hard = np.where(np.isfinite(hard), hard, background)
        rule_max, _ = grouped_max_and_topk(sims, *groups["rules"], 1)
        # (windows, categories, FEATURES): `_features` for every category at once
        feats = np.stack([pos_max, pos_topk, hard, background, rule_max], axis=2)
        return sigmoid(feats @ self.coef_ + self.intercept_ + self.category_bias_), sims

    def score(
        self, items: Sequence[Item], progress: Callable[[int], None] | None = None
    ) -> DetectorOutput:
        return self.score_windows(self.embed(items, progress))

    def score_windows(self, windows: Windows) -> DetectorOutput:
        n, n_cat = windows.n_items, len(self.category_ids)
        evidence: list[list[Evidence]] = [[] for _ in range(n)]
        if len(windows.owner) == 0:
            return DetectorOutput(np.full((n, n_cat), np.nan), evidence, windows.cut)
        probs, sims = self.window_probs(windows.embeddings)
        scores, best_win = group_max(probs, windows.owner, n)
        for i, c in zip(*np.nonzero(scores >= self.evidence_min_score), strict=True):
            evidence[i].append(self._evidence(int(c), float(scores[i, c]), sims[best_win[i, c]]))
        for ev in evidence:
            ev.sort(key=lambda e: -e.score)
        return DetectorOutput(scores, evidence, windows.cut)

    def _evidence(self, c: int, score: float, sims: np.ndarray) -> Evidence:
        proto = self.prototypes_[c]
        p = proto.pos[int(np.argmax(sims[proto.pos]))]
        negs = np.concatenate([proto.hard_neg, proto.background])
        q = negs[int(np.argmax(sims[negs]))]
        closest = quote(self.bank_texts_[p], 80)
        unlike = quote(self.bank_texts_[q], 80)
        detail = (
            f"closest violating example {closest} (similarity {sims[p]:.2f}); "
            f"closest non-violating {unlike} (similarity {sims[q]:.2f})"
        )
        return Evidence(self.name, self.category_ids[c], round(score, 4), detail, ref=closest)


def _feature_groups(protos: list[_Prototypes]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each feature's bank columns for every category, padded into one matrix, so that
    `window_probs` gathers them in one pass (a loop over the categories was a fifth of a served
    request's Python time). A background every category shares is one group."""
    backgrounds = [p.background for p in protos]
    shared = all(np.array_equal(b, backgrounds[0]) for b in backgrounds)
    return {
        "pos": padded_columns([p.pos for p in protos]),
        "hard_neg": padded_columns([p.hard_neg for p in protos]),
        "background": padded_columns(backgrounds[:1] if shared else backgrounds),
        "rules": padded_columns([p.rules for p in protos]),
    }


def encoder_version(encoder: Encoder) -> str:
    """ "/NAME", and "@RUNTIME" unless PyTorch runs it: how `model_version` names an encoder."""
    runtime = getattr(encoder, "runtime", "torch")  # Encoder does not declare it; torch if absent
    return f"/{encoder.name}" + (f"@{runtime}" if runtime != "torch" else "")


def _per_category_auc(z: np.ndarray, y: np.ndarray, cats: np.ndarray) -> dict[int, float]:
    from sklearn.metrics import roc_auc_score

    out = {}
    for c in np.unique(cats):
        m = cats == c
        if 0 < y[m].sum() < m.sum():
            out[int(c)] = float(roc_auc_score(y[m], z[m]))
    return out
