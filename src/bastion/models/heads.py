"""Multi-label classification heads over frozen encoder embeddings, trained with a masked loss.

Training data for moderation is a patchwork: one set says only "violating or not", another gives
one category per row, a third contains only violations. A label the data does not give is NaN and
is *masked out* of the loss, never read as "negative"; otherwise every AILuminate prompt would
teach the head that violent-crime prompts are not hate, not self-harm, not anything else.

A row known to violate *some* category without saying which (WildGuard's harmful prompts, DICES's
unsafe replies) still says something: at least one category applies. Its loss is the noisy-OR
likelihood -log(1 - prod_j (1 - p_j)), which pushes up whichever categories are already most
plausible for it and pushes none down. Dropping such rows instead would leave one style of text
(say, long chatbot prompts) with only safe examples, and the head would learn "style = safe".

Decision steps as auxiliary targets (`steps`, see `bastion.models.steps`): one more output group
per step, a softmax over its answers, trained on the *shared hidden layer* next to the category
outputs, its masked cross-entropy weighted by `step_weight`. The hidden layer is what lets the
answers help: over frozen embeddings a linear category output gains nothing from a separate
linear step output, since the two share no parameters. The step outputs are not saved; they only
shape the hidden layer, so a model trained with them loads, exports and serves as any other.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def masked_multilabel_loss(
    logits: torch.Tensor,
    y: torch.Tensor,
    weight: torch.Tensor,
    any_pos: torch.Tensor,
    pos_weight: torch.Tensor,
) -> torch.Tensor:
    """Weighted mean of per-category BCE over the known labels (NaN in `y` is masked out), plus
    the noisy-OR term -log(1 - prod_j (1 - p_j)) for rows in `any_pos` (violating, category
    not named). `weight` is per row, `pos_weight` per category (as in BCEWithLogits)."""
    import torch

    mask = torch.isfinite(y)
    target = torch.where(mask, y, torch.zeros_like(y))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, reduction="none"
    )
    weights = mask.float() * weight[:, None]
    total = (loss * weights).sum()
    norm = weights.sum()
    if bool(any_pos.any()):
        # log P(no category) = sum_j log(1 - p_j); the loss is -log(1 - P(no category)).
        log_none = torch.nn.functional.logsigmoid(-logits[any_pos]).sum(dim=1)
        nll = -torch.log(-torch.expm1(log_none.clamp_max(-1e-6)))
        total = total + (nll * weight[any_pos]).sum()
        norm = norm + weight[any_pos].sum()
    return total / norm.clamp_min(1.0)


@dataclass
class FitHistory:
    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int


class MultiLabelHead:
    """A linear (or one-hidden-layer) head, one sigmoid output per category; sklearn-style.

    `fit(X, Y)` takes labels in {0, 1, NaN}; positives are up-weighted per category to balance
    classes among the *known* labels, and training stops early on a validation split.
    """

    def __init__(
        self,
        hidden: int = 0,
        epochs: int = 300,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 512,
        patience: int = 15,
        val_fraction: float = 0.15,
        dropout: float = 0.1,
        balance: bool = True,
        step_weight: float = 0.5,
        seed: int = 0,
    ) -> None:
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.dropout = dropout
        self.balance = balance
        self.step_weight = step_weight
        self.seed = seed

    def _build(self, dim: int, n_out: int) -> object:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        if self.hidden:
            return nn.Sequential(
                nn.Dropout(self.dropout),
                nn.Linear(dim, self.hidden),
                nn.GELU(),
                nn.Dropout(self.dropout),
                nn.Linear(self.hidden, n_out),
            )
        return nn.Sequential(nn.Dropout(self.dropout), nn.Linear(dim, n_out))

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        validation: tuple[np.ndarray, ...] | None = None,
        at_least_one: np.ndarray | None = None,
        steps: np.ndarray | None = None,
        step_sizes: Sequence[int] | None = None,
    ) -> MultiLabelHead:
        """Fit on embeddings X (n, d) and labels Y (n, C) in {0, 1, NaN}; returns self.

        `at_least_one` (n,) marks rows that violate some category not named in Y (their Y is
        all NaN); `validation` is (X, Y) or (X, Y, at_least_one). `steps` (n, S) holds each
        row's answer index per decision step, -1 where unknown, and `step_sizes` the number of
        answers of each step; they need a hidden layer. Early stopping watches the category loss
        alone: the step outputs serve it and are not kept.
        """
        import torch

        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X {X.shape} and Y {Y.shape} must have the same number of rows")
        n, c = Y.shape
        sizes = [int(k) for k in step_sizes or []]
        step_y = (
            np.full((n, 0), -1, dtype=np.int64) if steps is None else np.asarray(steps, np.int64)
        )
        if step_y.shape != (n, len(sizes)):
            raise ValueError(
                f"steps {step_y.shape} must be ({n}, {len(sizes)}): one column per size"
            )
        if sizes and not self.hidden:
            raise ValueError("decision-step targets need a hidden layer (hidden > 0) to share")
        if step_y.size and (step_y >= np.asarray(sizes)).any():
            raise ValueError("a step answer index is not below its step's number of answers")
        w = (
            np.ones(n, dtype=np.float32)
            if sample_weight is None
            else sample_weight.astype(np.float32)
        )
        a1 = np.zeros(n, dtype=bool) if at_least_one is None else np.asarray(at_least_one, bool)
        if len(a1) != n:
            raise ValueError(f"at_least_one has {len(a1)} rows, X has {n}")
        rng = np.random.default_rng(self.seed)
        if validation is None:
            order = rng.permutation(n)
            n_val = round(n * self.val_fraction) if n >= 20 else 0
            val_idx, tr_idx = order[:n_val], order[n_val:]
            Xv, Yv, wv, a1v = X[val_idx], Y[val_idx], w[val_idx], a1[val_idx]
            X, Y, w, a1, step_y = X[tr_idx], Y[tr_idx], w[tr_idx], a1[tr_idx], step_y[tr_idx]
        else:
            Xv, Yv = (np.asarray(a, dtype=np.float32) for a in validation[:2])
            wv = np.ones(len(Xv), dtype=np.float32)
            a1v = (
                np.asarray(validation[2], bool) if len(validation) > 2 else np.zeros(len(Xv), bool)
            )
        known = np.isfinite(Y)
        pos = np.where(known, Y, 0).sum(axis=0)
        neg = known.sum(axis=0) - pos
        self.pos_weight_ = (
            np.clip(neg / np.maximum(pos, 1), 0.05, 50.0).astype(np.float32)
            if self.balance
            else np.ones(c, dtype=np.float32)
        )
        self.n_known_ = known.sum(axis=0)
        self.n_positive_ = pos.astype(int)
        self.n_step_known_ = (step_y >= 0).sum(axis=0)
        model = self._build(X.shape[1], c)
        assert isinstance(model, torch.nn.Sequential)
        step_layer = torch.nn.Linear(self.hidden, sum(sizes)) if sizes else None
        params = list(model.parameters()) + (
            [] if step_layer is None else list(step_layer.parameters())
        )
        opt = torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)
        pw = torch.from_numpy(self.pos_weight_)
        bounds = [int(b) for b in np.cumsum([0, *sizes])]

        def masked_loss(
            logits: torch.Tensor, y: torch.Tensor, wt: torch.Tensor, any_pos: torch.Tensor
        ) -> torch.Tensor:
            return masked_multilabel_loss(logits, y, wt, any_pos, pw)

        def step_loss(logits: torch.Tensor, s: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
            """Cross-entropy of each step's answer among its own answers, where it is known."""
            total, norm = logits.new_zeros(()), logits.new_zeros(())
            for j in range(len(sizes)):
                mask = s[:, j] >= 0
                if not bool(mask.any()):
                    continue
                ce = torch.nn.functional.cross_entropy(
                    logits[mask, bounds[j] : bounds[j + 1]], s[mask, j], reduction="none"
                )
                total = total + (ce * wt[mask]).sum()
                norm = norm + wt[mask].sum()
            return total / norm.clamp_min(1.0)

        def loss_on(idx: torch.Tensor) -> torch.Tensor:
            if step_layer is None:
                return masked_loss(model(Xt[idx]), Yt[idx], wt[idx], at[idx])
            hidden = model[:-1](Xt[idx])  # dropout, linear, GELU, dropout: shared by both
            loss = masked_loss(model[-1](hidden), Yt[idx], wt[idx], at[idx])
            return loss + self.step_weight * step_loss(step_layer(hidden), step_t[idx], wt[idx])

        Xt, Yt, wt, at, step_t = (torch.from_numpy(a) for a in (X, Y, w, a1, step_y))
        Xvt, Yvt, wvt, avt = (torch.from_numpy(a) for a in (Xv, Yv, wv, a1v))
        best, best_state, best_epoch, stale = float("inf"), None, 0, 0
        history = FitHistory([], [], 0)
        gen = torch.Generator().manual_seed(self.seed)
        modules = [model] if step_layer is None else [model, step_layer]
        for epoch in range(self.epochs):
            for m in modules:
                m.train()
            perm = torch.randperm(len(Xt), generator=gen)
            total = 0.0
            for start in range(0, len(Xt), self.batch_size):
                idx = perm[start : start + self.batch_size]
                opt.zero_grad()
                loss = loss_on(idx)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.item() * len(idx)
            history.train_loss.append(total / max(len(Xt), 1))
            if len(Xvt) == 0:
                continue
            for m in modules:
                m.eval()
            with torch.no_grad():
                val = float(masked_loss(model(Xvt), Yvt, wvt, avt))
            history.val_loss.append(val)
            if val < best - 1e-5:
                best, best_epoch, stale = val, epoch, 0
                best_state = [
                    {k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules
                ]
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            for m, state in zip(modules, best_state, strict=True):
                m.load_state_dict(state)
        for m in modules:
            m.eval()
        history.best_epoch = best_epoch
        self.model_ = model
        self.step_layer_ = step_layer
        self.step_sizes_ = sizes
        self.history_ = history
        self.n_categories_ = c
        return self

    def predict_steps(self, X: np.ndarray) -> list[np.ndarray]:
        """Per decision step, the probability of each of its answers (n, answers); only for a
        head just fitted with steps (the step outputs are not saved)."""
        import torch

        layer = getattr(self, "step_layer_", None)
        if layer is None:
            raise ValueError("this head was not fitted with decision-step targets")
        bounds = np.cumsum([0, *self.step_sizes_])
        with torch.no_grad():
            x = torch.from_numpy(np.asarray(X, dtype=np.float32))
            logits = layer(self.model_[:-1](x))
            return [
                torch.softmax(logits[:, a:b], dim=1).numpy().astype(np.float64)
                for a, b in itertools.pairwise(bounds)
            ]

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Logits (n, C)."""
        import torch

        with torch.no_grad():
            out = self.model_(torch.from_numpy(np.asarray(X, dtype=np.float32)))  # type: ignore[operator]
        return np.asarray(out.numpy(), dtype=np.float64)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities (n, C); calibration is a separate, held-out step."""
        return np.asarray(1.0 / (1.0 + np.exp(-self.decision_function(X))))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Weights as NumPy arrays, for safetensors."""
        return {k: v.numpy() for k, v in self.model_.state_dict().items()}  # type: ignore[attr-defined]

    @classmethod
    def from_state_dict(
        cls, state: dict[str, np.ndarray], n_categories: int, hidden: int = 0
    ) -> MultiLabelHead:
        """Rebuild a fitted head from saved weights (no training data needed)."""
        import torch

        head = cls(hidden=hidden)
        first = state["1.weight"]
        model = head._build(int(first.shape[1]), n_categories)
        assert isinstance(model, torch.nn.Sequential)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        model.eval()
        head.model_ = model
        head.step_layer_, head.step_sizes_ = None, []  # never saved: they served training only
        head.n_categories_ = n_categories
        return head
