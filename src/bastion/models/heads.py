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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    ) -> MultiLabelHead:
        """Fit on embeddings X (n, d) and labels Y (n, C) in {0, 1, NaN}; returns self.

        `at_least_one` (n,) marks rows that violate some category not named in Y (their Y is
        all NaN); `validation` is (X, Y) or (X, Y, at_least_one).
        """
        import torch

        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or len(X) != len(Y):
            raise ValueError(f"X {X.shape} and Y {Y.shape} must have the same number of rows")
        n, c = Y.shape
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
            X, Y, w, a1 = X[tr_idx], Y[tr_idx], w[tr_idx], a1[tr_idx]
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
        model = self._build(X.shape[1], c)
        assert isinstance(model, torch.nn.Module)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        pw = torch.from_numpy(self.pos_weight_)

        def masked_loss(
            logits: torch.Tensor, y: torch.Tensor, wt: torch.Tensor, any_pos: torch.Tensor
        ) -> torch.Tensor:
            mask = torch.isfinite(y)
            target = torch.where(mask, y, torch.zeros_like(y))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, target, pos_weight=pw, reduction="none"
            )
            weights = mask.float() * wt[:, None]
            total = (loss * weights).sum()
            norm = weights.sum()
            if bool(any_pos.any()):
                # log P(no category) = sum_j log(1 - p_j); the loss is -log(1 - P(no category)).
                log_none = torch.nn.functional.logsigmoid(-logits[any_pos]).sum(dim=1)
                nll = -torch.log(-torch.expm1(log_none.clamp_max(-1e-6)))
                total = total + (nll * wt[any_pos]).sum()
                norm = norm + wt[any_pos].sum()
            return total / norm.clamp_min(1.0)

        Xt, Yt, wt, at = (torch.from_numpy(a) for a in (X, Y, w, a1))
        Xvt, Yvt, wvt, avt = (torch.from_numpy(a) for a in (Xv, Yv, wv, a1v))
        best, best_state, best_epoch, stale = float("inf"), None, 0, 0
        history = FitHistory([], [], 0)
        gen = torch.Generator().manual_seed(self.seed)
        for epoch in range(self.epochs):
            model.train()
            perm = torch.randperm(len(Xt), generator=gen)
            total = 0.0
            for start in range(0, len(Xt), self.batch_size):
                idx = perm[start : start + self.batch_size]
                opt.zero_grad()
                loss = masked_loss(model(Xt[idx]), Yt[idx], wt[idx], at[idx])
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += loss.item() * len(idx)
            history.train_loss.append(total / max(len(Xt), 1))
            if len(Xvt) == 0:
                continue
            model.eval()
            with torch.no_grad():
                val = float(masked_loss(model(Xvt), Yvt, wvt, avt))
            history.val_loss.append(val)
            if val < best - 1e-5:
                best, best_epoch, stale = val, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
        history.best_epoch = best_epoch
        self.model_ = model
        self.history_ = history
        self.n_categories_ = c
        return self

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
        assert isinstance(model, torch.nn.Module)
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
        model.eval()
        head.model_ = model
        head.n_categories_ = n_categories
        return head
