"""The model mining retrains after every batch: logistic regression on frozen encoder embeddings.

Mining retrains after each batch of labels and rescoring the whole pool each time, so the model
must fit in well under a second on a few thousand labels and score a large pool with one matrix
product: a linear probe on the same embeddings every other part of Bastion uses. Its scores are
left unweighted (no class balancing), so they stay close to calibrated probabilities and the
uncertainty strategy's threshold of 0.5 means what it says. Until there are at least
`min_per_class` labels of each class it has nothing to learn from, and the policy's zero-shot
score stands in for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.atomic import write_atomic


class MiningModel:
    """`fit(X, y)` returns self; `predict_proba(X, prior)` gives P(violation) per row."""

    def __init__(self, C: float = 1.0, min_per_class: int = 2) -> None:
        self.C = C
        self.min_per_class = min_per_class
        self.coef_: np.ndarray | None = None
        self.intercept_ = 0.0

    @property
    def fitted(self) -> bool:
        return self.coef_ is not None

    def fit(
        self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> MiningModel:
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(y, dtype=int)
        if min(int((y == 1).sum()), int((y == 0).sum())) < self.min_per_class:
            self.coef_ = None
            return self
        lr = LogisticRegression(C=self.C, max_iter=1000)
        lr.fit(X, y, sample_weight=sample_weight)
        self.coef_ = lr.coef_[0].astype(np.float32)
        self.intercept_ = float(lr.intercept_[0])
        return self

    def predict_proba(self, X: np.ndarray, prior: np.ndarray) -> np.ndarray:
        """P(violation) per row of X; `prior` (the zero-shot score) while nothing is fitted."""
        if self.coef_ is None:
            return np.asarray(prior, dtype=float)
        z = X @ self.coef_ + self.intercept_
        proba: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        return proba

    def save(self, path: Path) -> None:
        coef = np.zeros(0, np.float32) if self.coef_ is None else self.coef_
        import io

        buffer = io.BytesIO()
        np.savez(buffer, coef=coef, intercept=np.array([self.intercept_]), C=np.array([self.C]))
        write_atomic(path, [buffer.getvalue()])

    @classmethod
    def load(cls, path: Path) -> MiningModel:
        with np.load(path) as data:
            model = cls(C=float(data["C"][0]))
            model.coef_ = data["coef"] if len(data["coef"]) else None
            model.intercept_ = float(data["intercept"][0])
        return model
