"""A mining project on disk: the pool it mines, the bandit's state, the propensity log and labels.

`next` embeds the pool (cached), scores it with the current model, lets the `Miner` choose a
batch and logs every pick with its propensity; `learn` takes labels back (from a file or the
review queue), retrains the model and pays the bandit; `report` estimates the pool's prevalence
from the log and what each strategy would have earned alone. Everything lives in one directory:

    mining.json        settings, pool fingerprint, rounds so far, bandit state (atomic rewrite)
    rounds/000001.json one per batch: allocation, context and every draw (written once)
    labels.jsonl       every label received, in order, conflicts included (atomic rewrite)
    model.npz          the current model
    embeddings.sqlite  the pool's embeddings by text hash

Each file is replaced whole (write to a temporary file, then rename), so a crash leaves the
project as it was after the last command that finished. A batch is logged before it is written
out; labels are recorded before the bandit learns from them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bastion.atomic import write_atomic
from bastion.errors import InputError
from bastion.mining.bandit import Context
from bastion.mining.estimate import (
    PolicyValue,
    Prevalence,
    policy_value,
    prevalence,
    propensity_under,
)
from bastion.mining.loop import (
    Miner,
    MiningSettings,
    auprc_rewards,
    blend_rewards,
    positive_rewards,
)
from bastion.mining.model import MiningModel
from bastion.mining.selection import Draw
from bastion.mining.strategies import RANDOM, PoolView

STATE = "mining.json"
LABELS = "labels.jsonl"
MODEL = "model.npz"
ROUNDS = "rounds"
EMBEDDINGS = "embeddings.sqlite"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PoolRef(_Strict):
    path: str
    items: int
    fingerprint: str


class ProjectState(_Strict):
    """mining.json."""

    version: int = 1
    created_at: datetime
    policy: str
    categories: list[str]
    settings: dict[str, Any]
    seed: int
    pool: PoolRef
    validation: str | None = None
    rounds: int = 0
    bandit: dict[str, Any] | None = None
    #: Label records (a prefix of labels.jsonl) the bandit has been paid for; a crash between
    #: recording labels and saving this state leaves the rest to be paid by the next `learn`.
    labels_paid: int = 0


class DrawLog(_Strict):
    slot: int
    item_id: str
    strategy: str
    propensity: float
    available: int
    proposals: dict[str, str]


class RoundLog(_Strict):
    """rounds/NNNNNN.json: one batch as it was chosen."""

    round: int
    created_at: datetime
    allocation: dict[str, float]
    context: dict[str, float]
    positives_before: int
    pending_before: list[str]
    draws: list[DrawLog]


class LabelRecord(_Strict):
    item_id: str
    label: int | None
    categories: list[str] = Field(default_factory=list)
    source: str
    received_at: datetime


@dataclass(frozen=True)
class PoolItem:
    item_id: str
    text: str


@dataclass(frozen=True)
class Batch:
    """What `next` chose: the items in slot order with strategy and propensity, and the
    pool lines it could not use."""

    round: int
    items: list[tuple[PoolItem, DrawLog]]
    allocation: dict[str, float]
    available: int


@dataclass(frozen=True)
class LearnResult:
    accepted: int
    unknown: list[str]
    conflicts: dict[str, dict[str, int]]
    unresolved: list[str]
    rewarded: dict[str, tuple[float, int]]
    problems: list[str]
    labelled: int
    positives: int


@dataclass(frozen=True)
class Report:
    prevalence: Prevalence
    slots_used: int
    draws: int
    labelled: int
    positives: int
    rounds: int
    per_strategy: dict[str, dict[str, float]]
    alone: dict[str, PolicyValue] = field(default_factory=dict)
    bandit: dict[str, Any] | None = None


def parse_label(value: Any) -> int | None:
    """1, 0 or None (unsure) from the forms labels come in; anything else is an error."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("1", "violating", "violation", "yes", "true", "unsafe", "positive"):
            return 1
        if text in ("0", "not_violating", "ok", "no", "false", "safe", "negative"):
            return 0
        if text in ("unsure", "skip", ""):
            return None
    raise InputError(
        f"label {value!r} is not one of 1/0, true/false, 'violating'/'not_violating', 'unsure'"
    )


def effective_labels(
    records: Iterable[LabelRecord],
) -> tuple[dict[str, int], dict[str, Counter[int]]]:
    """The label per item by majority over its records (unsure ones do not vote), and the items
    whose records disagree with their vote counts. A tie has no majority: the item is left
    out (it shows among the conflicts with equal counts)."""
    votes: dict[str, Counter[int]] = {}
    for record in records:
        if record.label is not None:
            votes.setdefault(record.item_id, Counter())[record.label] += 1
    labels: dict[str, int] = {}
    conflicts: dict[str, Counter[int]] = {}
    for item_id, count in votes.items():
        if len(count) > 1:
            conflicts[item_id] = count
            if count[0] == count[1]:
                continue
        labels[item_id] = count.most_common(1)[0][0]
    return labels, conflicts


class MiningProject:
    """One mining effort over one pool; see the module docstring for the files."""

    def __init__(self, root: Path, state: ProjectState) -> None:
        self.root = root
        self.state = state

    # ------------------------------------------------------------------ create / open

    @classmethod
    def open(cls, root: Path | str) -> MiningProject:
        root = Path(root)
        path = root / STATE
        if not path.exists():
            raise InputError(
                f"{root} is not a mining project (no {STATE}); run 'bastion mine next'"
            )
        try:
            state = ProjectState.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise InputError(f"{path} is unreadable: {e}") from None
        return cls(root, state)

    @classmethod
    def create(
        cls,
        root: Path | str,
        pool: Sequence[PoolItem],
        pool_path: Path,
        *,
        policy: str = "openai",
        categories: Sequence[str] = (),
        settings: MiningSettings | None = None,
        validation: Path | None = None,
        seed: int = 0,
    ) -> MiningProject:
        settings = (settings or MiningSettings()).check()
        if settings.reward != "positives" and validation is None:
            raise InputError(
                f"the {settings.reward!r} reward needs a labelled validation set (--validation)"
            )
        root = Path(root)
        (root / ROUNDS).mkdir(parents=True, exist_ok=True)
        state = ProjectState(
            created_at=datetime.now(UTC),
            policy=policy,
            categories=list(categories),
            settings=_settings_json(settings),
            seed=seed,
            pool=PoolRef(path=str(pool_path), items=len(pool), fingerprint=_fingerprint(pool)),
            validation=None if validation is None else str(validation),
        )
        project = cls(root, state)
        project._save_state()
        return project

    @property
    def settings(self) -> MiningSettings:
        raw = dict(self.state.settings)
        raw["strategies"] = tuple(raw["strategies"])
        return MiningSettings(**raw)

    # ------------------------------------------------------------------ next

    def next(
        self,
        pool: Sequence[PoolItem],
        budget: int,
        embed: Callable[[Sequence[str]], np.ndarray],
        zero_shot: Callable[[np.ndarray], np.ndarray],
    ) -> Batch:
        """Choose and log the next batch of up to `budget` items from `pool`."""
        if budget <= 0:
            raise InputError(f"the budget is {budget}: ask for at least one item")
        self._check_pool(pool)
        ids = [p.item_id for p in pool]
        index = {item_id: i for i, item_id in enumerate(ids)}
        X = embed([p.text for p in pool])
        prior = zero_shot(X)
        labels, _ = effective_labels(self.labels())
        label = np.full(len(pool), np.nan)
        for item_id, value in labels.items():
            if item_id in index:
                label[index[item_id]] = value
        model = self.model()
        view = PoolView(X, model.predict_proba(X, prior), prior, label)
        pending = [i for i in self.pending() if i in index]
        free = int((~np.isfinite(label)).sum()) - len(pending)
        if free <= 0:
            raise InputError("every item in the pool is labelled or already out for labelling")
        miner = Miner.resume(self.settings, self.state.bandit)
        rng = np.random.default_rng([self.state.seed, self.state.rounds + 1])
        exclude = np.array([index[i] for i in pending], dtype=int)
        draws, allocation, context = miner.choose(view, min(budget, free), rng, exclude=exclude)
        number = self.state.rounds + 1
        log = RoundLog(
            round=number,
            created_at=datetime.now(UTC),
            allocation=allocation,
            context={
                "labelled": context.labelled,
                "positive_rate": context.positive_rate,
                "score_entropy": context.score_entropy,
            },
            positives_before=sum(1 for v in labels.values() if v == 1),
            pending_before=pending,
            draws=[_draw_log(slot, d, ids) for slot, d in enumerate(draws)],
        )
        write_atomic(self._round_path(number), [log.model_dump_json().encode()])
        self.state.rounds = number
        self._save_state()
        items = [(pool[index[d.item_id]], d) for d in log.draws]
        return Batch(number, items, allocation, free)

    # ------------------------------------------------------------------ learn

    def learn(
        self,
        records: Sequence[LabelRecord],
        pool: Sequence[PoolItem],
        embed: Callable[[Sequence[str]], np.ndarray],
        *,
        severity: Callable[[Sequence[str]], float] = lambda _: 1.0,
        validation: tuple[np.ndarray, np.ndarray] | None = None,
        problems: Sequence[str] = (),
    ) -> LearnResult:
        """Record `records`, retrain on every label, and pay the bandit for the picks whose
        labels arrived now. Labels naming items not in the pool are refused and listed."""
        self._check_pool(pool)
        ids = {p.item_id: i for i, p in enumerate(pool)}
        known = [r for r in records if r.item_id in ids]
        unknown = list(dict.fromkeys(r.item_id for r in records if r.item_id not in ids))
        recorded = self.labels()
        before, _ = effective_labels(recorded[: self.state.labels_paid])
        history = recorded + known
        write_atomic(self.root / LABELS, (r.model_dump_json().encode() + b"\n" for r in history))
        labels, conflicts = effective_labels(history)
        unresolved = [i for i, c in conflicts.items() if c[0] == c[1]]
        X = embed([p.text for p in pool])
        rows = np.array([ids[i] for i in labels], dtype=int)
        y = np.array(list(labels.values()), dtype=float)
        model = MiningModel().fit(X[rows], y) if len(rows) else MiningModel()
        model.save(self.root / MODEL)

        # Pay the bandit, round by round (each round's context), for draws labelled just now.
        categories: dict[str, list[str]] = {}
        for r in known:
            categories[r.item_id] = r.categories or categories.get(r.item_id, [])
        miner = Miner.resume(self.settings, self.state.bandit)
        paid: dict[str, list[float]] = {}
        for log in self.rounds():
            fresh = [d for d in log.draws if d.item_id in labels and d.item_id not in before]
            if not fresh:
                continue
            draws = [Draw(ids[d.item_id], d.strategy, d.propensity, d.available) for d in fresh]
            gold = [labels[d.item_id] for d in fresh]
            weights = [severity(categories.get(d.item_id, [])) for d in fresh]
            rewards = positive_rewards(draws, gold, weights)
            if self.settings.reward != "positives":
                if validation is None:
                    raise InputError(
                        f"the {self.settings.reward!r} reward needs the validation set"
                    )
                Xv, yv = validation
                rewards = self._auprc(rewards, draws, labels, ids, X, Xv, yv, before)
            miner.learn(rewards, _context(log))
            for arm, (total, n) in rewards.items():
                acc = paid.setdefault(arm, [0.0, 0])
                acc[0] += total
                acc[1] += n
        self.state.bandit = miner.state()
        self.state.labels_paid = len(history)
        self._save_state()
        return LearnResult(
            accepted=len(known),
            unknown=unknown,
            conflicts={i: {str(k): v for k, v in c.items()} for i, c in conflicts.items()},
            unresolved=unresolved,
            rewarded={a: (t[0], int(t[1])) for a, t in paid.items()},
            problems=list(problems),
            labelled=len(labels),
            positives=int(sum(labels.values())),
        )

    def _auprc(
        self,
        positives: dict[str, tuple[float, int]],
        draws: list[Draw],
        labels: dict[str, int],
        ids: dict[str, int],
        X: np.ndarray,
        Xv: np.ndarray,
        yv: np.ndarray,
        before: dict[str, int],
    ) -> dict[str, tuple[float, int]]:
        from sklearn.metrics import average_precision_score

        everything = {**before, **labels}
        y_all = np.full(len(X), np.nan)
        for item_id, value in everything.items():
            y_all[ids[item_id]] = value
        prior_v = np.zeros(len(Xv))

        def fit_score(rows: np.ndarray) -> float:
            model = MiningModel().fit(X[rows], y_all[rows])
            return float(average_precision_score(yv, model.predict_proba(Xv, prior_v)))

        base = np.array([ids[i] for i in before], dtype=int)
        gains = auprc_rewards(fit_score, base, draws, self.settings.auprc_scale)
        if self.settings.reward == "auprc":
            return gains
        return blend_rewards(positives, gains, self.settings.blend)

    # ------------------------------------------------------------------ report

    def report(self) -> Report:
        """Prevalence from the random slots, per-strategy yield, and each strategy's estimated
        yield alone (with the same random floor) by inverse propensity scoring."""
        labels, _ = effective_labels(self.labels())
        rounds = self.rounds()
        kb: list[int] = []
        av: list[int] = []
        hits: list[int] = []
        slots = 0
        complete = True
        rewards: list[float] = []
        logged: list[float] = []
        per: dict[str, list[float]] = {}
        for log in rounds:
            earlier = list(log.pending_before)
            for d in log.draws:
                if d.item_id in labels:
                    y = labels[d.item_id]
                    acc = per.setdefault(d.strategy, [0.0, 0.0])
                    acc[0] += y
                    acc[1] += 1
                    rewards.append(float(y))
                    logged.append(d.propensity)
                complete = complete and all(i in labels for i in earlier) and d.item_id in labels
                if complete:
                    slots += 1
                    if d.strategy == RANDOM:
                        kb.append(log.positives_before + sum(labels[i] for i in earlier))
                        av.append(d.available)
                        hits.append(labels[d.item_id])
                earlier.append(d.item_id)
        known_now = sum(1 for v in labels.values() if v == 1)
        remaining = self.state.pool.items - len(labels)
        estimate = prevalence(kb, av, hits, known_now, remaining, self.state.pool.items)
        alone: dict[str, PolicyValue] = {}
        floor = self.settings.floor
        for arm in self.settings.strategies:
            target = {arm: 1 - floor, RANDOM: floor} if arm != RANDOM else {RANDOM: 1.0}
            probs = [
                propensity_under(target, d.proposals, d.available, d.item_id)
                for log in rounds
                for d in log.draws
                if d.item_id in labels
            ]
            alone[arm] = policy_value(rewards, logged, probs)
        return Report(
            prevalence=estimate,
            slots_used=slots,
            draws=sum(len(log.draws) for log in rounds),
            labelled=len(labels),
            positives=known_now,
            rounds=len(rounds),
            per_strategy={a: {"picked": v[1], "violations": v[0]} for a, v in per.items()},
            alone=alone,
            bandit=self.state.bandit,
        )

    # ------------------------------------------------------------------ files

    def labels(self) -> list[LabelRecord]:
        path = self.root / LABELS
        if not path.exists():
            return []
        with path.open(encoding="utf-8") as fh:
            return [LabelRecord.model_validate_json(line) for line in fh if line.strip()]

    def rounds(self) -> list[RoundLog]:
        return [
            RoundLog.model_validate_json(self._round_path(n).read_text(encoding="utf-8"))
            for n in range(1, self.state.rounds + 1)
        ]

    def pending(self) -> list[str]:
        """Items sent out for labelling that have no label yet (an unsure one counts as none)."""
        labels, conflicts = effective_labels(self.labels())
        decided = set(labels) | set(conflicts)
        out = [d.item_id for log in self.rounds() for d in log.draws if d.item_id not in decided]
        return list(dict.fromkeys(out))

    def model(self) -> MiningModel:
        path = self.root / MODEL
        return MiningModel.load(path) if path.exists() else MiningModel()

    def _check_pool(self, pool: Sequence[PoolItem]) -> None:
        if not pool:
            raise InputError("the pool has no usable items")
        if _fingerprint(pool) != self.state.pool.fingerprint:
            raise InputError(
                f"this project mines {self.state.pool.path} ({self.state.pool.items:,} items); "
                f"the pool given has different items ({len(pool):,}). Mining another pool "
                "needs its own project (--project), or the estimates would mix two populations"
            )

    def _round_path(self, number: int) -> Path:
        return self.root / ROUNDS / f"{number:06d}.json"

    def _save_state(self) -> None:
        write_atomic(self.root / STATE, [self.state.model_dump_json(indent=1).encode()])


def _settings_json(settings: MiningSettings) -> dict[str, Any]:
    from dataclasses import asdict

    raw = asdict(settings)
    raw["strategies"] = list(raw["strategies"])
    return raw


def _fingerprint(pool: Sequence[PoolItem]) -> str:
    import hashlib

    digest = hashlib.sha256()
    for item in pool:
        digest.update(item.item_id.encode() + b"\0")
    return digest.hexdigest()[:32]


def _draw_log(slot: int, draw: Draw, ids: list[str]) -> DrawLog:
    return DrawLog(
        slot=slot,
        item_id=ids[draw.index],
        strategy=draw.strategy,
        propensity=draw.propensity,
        available=draw.available,
        proposals={arm: ids[i] for arm, i in draw.proposals.items()},
    )


def _context(log: RoundLog) -> Context:
    return Context(
        labelled=int(log.context["labelled"]),
        positive_rate=log.context["positive_rate"],
        score_entropy=log.context["score_entropy"],
    )


def read_pool(path: Path) -> tuple[list[PoolItem], list[str]]:
    """The pool's items with text, and a message per line that has none or repeats an id."""
    from bastion.batch import open_input

    source = open_input(path)
    items: list[PoolItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    for chunk in source.plan(max(1, source.count())):
        for batch in source.read(chunk, 4096):
            for row in batch:
                record = row.record
                where = f"{path.name} line {record.line}"
                if record.item is None:
                    problems.append(record.error or f"{where}: unreadable")
                    continue
                item = record.item
                item_id = str(item.id) if item.id is not None else f"line-{record.line}"
                if not (item.text or "").strip():
                    problems.append(f"{where}: item {item_id!r} has no text; mining reads text")
                    continue
                if item_id in seen:
                    problems.append(f"{where}: item id {item_id!r} appears again; first kept")
                    continue
                seen.add(item_id)
                items.append(PoolItem(item_id, str(item.text)))
    if not items:
        raise InputError(f"{path}: no item with text to mine" + _first(problems))
    return items, problems


def json_rows(path: Path) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """The JSON objects of a JSONL file, each with where it was ("file line n"), and a message
    per line that is not one."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {path}: {e}") from None
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path.name} line {n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            problems.append(f"{where}: not JSON ({e})")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: not a JSON object")
            continue
        rows.append((where, row))
    return rows, problems


def read_labels(path: Path, source: str) -> tuple[list[LabelRecord], list[str]]:
    """Label records from a JSONL file ({"id", "label", "categories"?}); a message per bad line."""
    records: list[LabelRecord] = []
    rows, problems = json_rows(path)
    now = datetime.now(UTC)
    for where, row in rows:
        try:
            item_id = row.get("id", row.get("item_id"))
            if not isinstance(item_id, str | int) or isinstance(item_id, bool) or item_id == "":
                raise InputError("no 'id'")
            if "label" not in row:
                raise InputError("no 'label'")
            label = parse_label(row["label"])
            categories = row.get("categories") or []
            if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
                raise InputError("'categories' must be a list of category ids")
        except InputError as e:
            problems.append(f"{where}: {e}")
            continue
        records.append(
            LabelRecord(
                item_id=str(item_id), label=label, categories=categories, source=source,
                received_at=now,
            )
        )  # fmt: skip
    return records, problems


def read_gold(path: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """Texts with a gold 0/1 `label` (a simulation pool, a validation set), and a message per
    line without both."""
    texts: list[str] = []
    labels: list[int] = []
    rows, problems = json_rows(path)
    for where, row in rows:
        text = str(row.get("text") or "").strip()
        try:
            if not text:
                raise InputError("no text")
            value = parse_label(row.get("label"))
            if value is None:
                raise InputError("a gold label must be 0 or 1, not unsure")
        except InputError as e:
            problems.append(f"{where}: {e}")
            continue
        texts.append(text)
        labels.append(value)
    if not texts:
        raise InputError(f"{path}: no line with text and a gold label" + _first(problems))
    return texts, np.array(labels, dtype=float), problems


def _first(problems: list[str]) -> str:
    return f" (first problem: {problems[0]})" if problems else ""
