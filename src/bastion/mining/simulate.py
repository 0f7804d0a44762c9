"""Pool-based simulation: replay mining with a dataset's gold labels as the annotators.

For each random seed the pool is split once into a held-out test set (stratified) and the pool
mined from, and a seed set is labelled (a few known violations, as a team starting on a new harm
has, plus a random handful); then every policy (the bandit, each strategy alone, random) mines
the same pool from the same seed set: choose a batch, reveal its gold labels, retrain, score the
held-out set, repeat until the budget is spent. What comes out per policy and seed is a learning
curve (labels → AUPRC on the held-out set, violations found), and across them the numbers the
benchmark reports: violations found, final AUPRC, the normalised area under the AUPRC curve,
the regret against the best single strategy in hindsight, and the prevalence estimate's error.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.errors import InputError
from bastion.mining.estimate import prevalence
from bastion.mining.loop import (
    FLOOR_SUFFIX,
    Miner,
    MiningSettings,
    auprc_rewards,
    blend_rewards,
    positive_rewards,
)
from bastion.mining.model import MiningModel
from bastion.mining.strategies import RANDOM, STRATEGIES, PoolView

#: The bandit's row in tables, and the order policies are listed in.
BANDIT = "bandit"


@dataclass(frozen=True)
class SimulationConfig:
    budget: int = 2000
    batch: int = 100
    seeds: int = 5
    seed_positives: int = 5
    seed_random: int = 45
    holdout: float = 0.2
    policies: tuple[str, ...] = (BANDIT, *STRATEGIES)
    settings: MiningSettings = field(default_factory=MiningSettings)

    def check(self, n: int, positives: int) -> SimulationConfig:
        if self.budget <= 0:
            raise InputError("the labelling budget is 0: there is nothing to simulate")
        if self.batch <= 0:
            raise InputError(f"the batch size must be at least 1, got {self.batch}")
        pool = n - round(n * self.holdout) - self.seed_positives - self.seed_random
        if pool < self.budget:
            raise InputError(
                f"the pool has {pool} items to mine after the held-out split and the seed set, "
                f"fewer than the budget of {self.budget}; lower the budget or use a larger pool"
            )
        if positives < self.seed_positives + 2:
            raise InputError(
                f"the pool has {positives} violations; the seed set alone needs "
                f"{self.seed_positives} and the held-out set at least 2"
            )
        unknown = [
            p
            for p in self.policies
            if p != BANDIT and p.removesuffix(FLOOR_SUFFIX) not in STRATEGIES
        ]
        if unknown:
            raise InputError(f"unknown policy {unknown[0]!r}: {BANDIT!r} or a strategy name")
        return self


@dataclass
class Curve:
    """One policy's run on one seed: a point after the seed set and after every batch."""

    policy: str
    seed: int
    labels: list[int] = field(default_factory=list)
    found: list[int] = field(default_factory=list)
    auprc: list[float] = field(default_factory=list)
    allocation: list[dict[str, float]] = field(default_factory=list)
    prevalence: dict[str, float] = field(default_factory=dict)

    @property
    def aulc(self) -> float:
        """Area under the AUPRC curve over the labels spent, divided by the labels spent."""
        x = np.asarray(self.labels, dtype=float)
        if len(x) < 2 or x[-1] == x[0]:
            return float(self.auprc[-1]) if self.auprc else float("nan")
        return float(np.trapezoid(self.auprc, x) / (x[-1] - x[0]))


@dataclass
class Simulation:
    """Every curve, the pool's facts and the per-policy summary."""

    curves: list[Curve]
    facts: dict[str, Any]

    def summary(self) -> list[dict[str, Any]]:
        """Per policy, means (and spreads) over seeds; regret against the best single strategy."""
        policies = list(dict.fromkeys(c.policy for c in self.curves))
        rows: list[dict[str, Any]] = []
        for policy in policies:
            mine = [c for c in self.curves if c.policy == policy]
            found = np.array([c.found[-1] for c in mine], dtype=float)
            final = np.array([c.auprc[-1] for c in mine], dtype=float)
            aulc = np.array([c.aulc for c in mine], dtype=float)
            estimated = [c.prevalence for c in mine if c.prevalence]
            if estimated:
                prevalence = {
                    "prevalence_estimate": float(np.mean([p["estimate"] for p in estimated])),
                    "prevalence_covered": float(
                        np.mean([p["low"] <= p["truth"] <= p["high"] for p in estimated])
                    ),
                }
            else:
                prevalence = {}
            rows.append(
                {"policy": policy, "seeds": len(mine), "found": float(found.mean()),
                 "found_sd": float(found.std()), "final_auprc": float(final.mean()),
                 "final_auprc_sd": float(final.std()), "aulc": float(aulc.mean())} | prevalence
            )  # fmt: skip
        singles = [r for r in rows if r["policy"] in STRATEGIES]
        if singles:
            best = max(singles, key=lambda r: r["found"])
            for row in rows:
                row["regret_found"] = best["found"] - row["found"]
                row["best_single"] = best["policy"]
        random_row = next((r for r in rows if r["policy"] == RANDOM), None)
        for row in rows:
            row["vs_random"] = (
                row["found"] / random_row["found"]
                if random_row and random_row["found"] > 0
                else float("nan")
            )
        return rows

    def to_json(self) -> dict[str, Any]:
        return {
            "facts": self.facts,
            "summary": self.summary(),
            "curves": [asdict(c) | {"aulc": c.aulc} for c in self.curves],
        }


def simulate(
    X: np.ndarray,
    y: np.ndarray,
    zero_shot: np.ndarray,
    config: SimulationConfig,
    *,
    name: str = "pool",
    progress: Callable[[int], None] | None = None,
) -> Simulation:
    """Run every policy of `config` on every seed over the embedded pool (X, gold labels y);
    `progress` is called with the number of batches done after each one."""
    X = np.asarray(X, dtype=np.float32)
    y = np.asarray(y, dtype=float)
    if not np.isin(y, (0, 1)).all():
        raise InputError("the simulation's gold labels must all be 0 or 1")
    config.check(len(y), int(y.sum()))
    curves: list[Curve] = []
    for seed in range(config.seeds):
        rng = np.random.default_rng(seed)
        test, pool = _split(y, config.holdout, rng)
        seed_set = _seed_set(y[pool], config.seed_positives, config.seed_random, rng)
        data = _Data(X[pool], y[pool], zero_shot[pool], X[test], y[test], zero_shot[test])
        for k, policy in enumerate(config.policies):
            run_rng = np.random.default_rng([seed, k])
            curves.append(_mine(data, seed_set, policy, seed, config, run_rng, progress))
    facts = {
        "name": name, "items": len(y), "positives": int(y.sum()),
        "prevalence": float(y.mean()), "budget": config.budget, "batch": config.batch,
        "seeds": config.seeds, "seed_positives": config.seed_positives,
        "seed_random": config.seed_random, "holdout": config.holdout,
        "reward": config.settings.reward, "floor": config.settings.floor,
        "bandit": _policy(BANDIT, config.settings),
    }  # fmt: skip
    return Simulation(curves, facts)


def rounds(config: SimulationConfig) -> int:
    """Batches one simulation runs: per policy and seed, budget / batch rounded up."""
    return config.seeds * len(config.policies) * -(-config.budget // config.batch)


@dataclass(frozen=True)
class _Data:
    X: np.ndarray
    y: np.ndarray
    zero_shot: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    zero_shot_test: np.ndarray

    def auprc(self, model: MiningModel) -> float:
        from sklearn.metrics import average_precision_score

        score = model.predict_proba(self.X_test, self.zero_shot_test)
        return float(average_precision_score(self.y_test, score))

    def fit_score(self, rows: np.ndarray) -> float:
        return self.auprc(MiningModel().fit(self.X[rows], self.y[rows]))


def _mine(
    data: _Data,
    seed_set: np.ndarray,
    policy: str,
    seed: int,
    config: SimulationConfig,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None,
) -> Curve:
    """One policy's run from the seed set until the budget is spent."""
    settings = MiningSettings(
        **{**asdict(config.settings), "policy": _policy(policy, config.settings)}
    )
    miner = Miner(settings)
    label = np.full(len(data.y), np.nan)
    label[seed_set] = data.y[seed_set]
    seed_found = int(data.y[seed_set].sum())
    curve = Curve(policy, seed)
    model = MiningModel()
    random_slots: list[tuple[int, int, int]] = []
    spent = 0
    while True:
        known = np.flatnonzero(np.isfinite(label))
        model.fit(data.X[known], label[known])
        curve.labels.append(spent)
        curve.found.append(int(np.nansum(label == 1)) - seed_found)
        curve.auprc.append(data.auprc(model))
        if spent >= config.budget:
            break
        view = PoolView(data.X, model.predict_proba(data.X, data.zero_shot), data.zero_shot, label)
        draws, allocation, context = miner.choose(
            view, min(config.batch, config.budget - spent), rng
        )
        curve.allocation.append(allocation)
        picked = np.array([d.index for d in draws])
        gold = data.y[picked]
        before = int(np.nansum(label == 1))
        for k, draw in enumerate(draws):
            if draw.strategy == RANDOM:
                random_slots.append((before + int(gold[:k].sum()), draw.available, int(gold[k])))
        rewards = positive_rewards(draws, gold.tolist(), [1.0] * len(draws))
        if settings.reward != "positives":
            gains = auprc_rewards(data.fit_score, known, draws, settings.auprc_scale)
            rewards = (
                gains
                if settings.reward == "auprc"
                else blend_rewards(rewards, gains, settings.blend)
            )
        miner.learn(rewards, context)
        label[picked] = gold
        spent += len(draws)
        if progress is not None:
            progress(1)
    if random_slots:
        est = prevalence(
            *_columns(random_slots), int(np.nansum(label == 1)),
            int((~np.isfinite(label)).sum()), len(data.y),
        )  # fmt: skip
        curve.prevalence = {"truth": float(data.y.mean()), "estimate": est.estimate,
                            "low": est.low, "high": est.high, "random_draws": est.random_draws}  # fmt: skip
    return curve


def _columns(
    slots: list[tuple[int, int, int]],
) -> tuple[list[int], list[int], list[int]]:
    return [s[0] for s in slots], [s[1] for s in slots], [s[2] for s in slots]


def _policy(policy: str, settings: MiningSettings) -> str:
    if policy == BANDIT:
        return settings.policy if settings.adaptive else "thompson"
    return policy


def _split(
    y: np.ndarray, holdout: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified: `holdout` of the positives and of the negatives go to the test set."""
    test = []
    for cls in (0, 1):
        idx = rng.permutation(np.flatnonzero(y == cls))
        test.append(idx[: round(len(idx) * holdout)])
    test_idx = np.sort(np.concatenate(test))
    pool_idx = np.setdiff1d(np.arange(len(y)), test_idx)
    return test_idx, pool_idx


def _seed_set(y: np.ndarray, positives: int, n_random: int, rng: np.random.Generator) -> np.ndarray:
    pos = rng.choice(np.flatnonzero(y == 1), positives, replace=False)
    rest = np.setdiff1d(np.arange(len(y)), pos)
    return np.concatenate([pos, rng.choice(rest, n_random, replace=False)])


# --------------------------------------------------------------------------- report


def write_report(simulations: Sequence[Simulation], out_dir: Path) -> Path:
    """Learning curves (AUPRC and violations found against labels) as PNGs, the summary table
    and every number as simulation.json; returns the HTML page's path."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []
    for sim in simulations:
        name = str(sim.facts["name"])
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
        for policy in dict.fromkeys(c.policy for c in sim.curves):
            mine = [c for c in sim.curves if c.policy == policy]
            x = np.asarray(mine[0].labels)
            style = {"lw": 2.6, "color": "black"} if policy == BANDIT else {"lw": 1.3}
            for ax, key in zip(axes, ("auprc", "found"), strict=True):
                values = np.array([getattr(c, key) for c in mine], dtype=float)
                ax.plot(x, values.mean(axis=0), label=policy, **style)  # type: ignore[arg-type]
                if len(mine) > 1:
                    ax.fill_between(x, values.min(axis=0), values.max(axis=0), alpha=0.08)
        axes[0].set(xlabel="labels spent", ylabel="AUPRC on the held-out set", title=name)
        axes[1].set(xlabel="labels spent", ylabel="violations found", title=name)
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[1].legend(fontsize=8, loc="upper left")
        fig.tight_layout()
        image = f"curves-{_slug(name)}.png"
        fig.savefig(out_dir / image, dpi=100)
        plt.close(fig)
        sections.append(_section(sim, image))
    (out_dir / "simulation.json").write_text(
        json.dumps([s.to_json() for s in simulations], indent=1), encoding="utf-8"
    )
    page = out_dir / "index.html"
    page.write_text(
        "<!doctype html><meta charset=utf-8><title>Bastion mining simulation</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style>"
        "<h1>Mining simulation</h1>" + "".join(sections),
        encoding="utf-8",
    )
    return page


def _section(sim: Simulation, image: str) -> str:
    f = sim.facts
    head = (
        f"<h2>{html.escape(str(f['name']))}</h2><p>{f['items']:,} items, {f['positives']:,} "
        f"violations ({100 * f['prevalence']:.2f} %); budget {f['budget']:,} in batches of "
        f"{f['batch']}, {f['seeds']} seeds, reward {html.escape(str(f['reward']))}</p>"
    )
    cols = ("policy", "found", "vs_random", "final_auprc", "aulc", "regret_found")
    rows = "".join(
        "<tr>" + "".join(f"<td>{_cell(r.get(c))}</td>" for c in cols) + "</tr>"
        for r in sim.summary()
    )
    table = "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + rows + "</table>"
    return head + table + f'<p><img src="{image}" width="1000"></p>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-") or "pool"
