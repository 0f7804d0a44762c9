"""Labelled sets and label maps: how a dataset's own labels become a policy's categories.

A `LabelledSet` holds texts with a binary label (violates anything?) and, where the dataset has
one, a *native* label per row (a hazard code, a target group, a class name). A `LabelMap` maps
native labels onto policy category ids. The mapping decides what is known: a row whose native
label maps to `hate` is a positive for `hate`; a row known to be safe is a negative for every
category; a row with a native label that maps elsewhere is a negative for `hate` only when the set
is single-label (`exclusive`), and *unknown* (NaN) otherwise. "Missing" never silently becomes
"negative".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from bastion.errors import LabelMapError
from bastion.policy import LoadedPolicy

NATIVE_SEPARATOR = "|"  # a row of a multi-label set lists its native labels as "insult|threat"


@dataclass
class LabelledSet:
    """Texts with labels. `binary[i]` is 1 (violates), 0 (safe) or NaN (unknown)."""

    name: str
    texts: list[str]
    binary: np.ndarray
    native: list[str | None] = field(default_factory=list)
    licence: str = "unknown"
    use: str = "dev-only"
    exclusive: bool = True
    description: str = ""
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        self.binary = np.asarray(self.binary, dtype=np.float64)
        if not self.native:
            self.native = [None] * n
        if not self.ids:
            self.ids = [str(i) for i in range(n)]
        if not (len(self.binary) == len(self.native) == len(self.ids) == n):
            raise ValueError(f"{self.name}: texts, labels and ids differ in length")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def all_positive(self) -> bool:
        known = self.binary[np.isfinite(self.binary)]
        return bool(len(known)) and bool((known == 1).all())

    def subset(self, idx: Sequence[int] | np.ndarray) -> LabelledSet:
        idx = np.asarray(idx, dtype=np.int64)
        return LabelledSet(
            self.name,
            [self.texts[i] for i in idx],
            self.binary[idx],
            [self.native[i] for i in idx],
            self.licence,
            self.use,
            self.exclusive,
            self.description,
            [self.ids[i] for i in idx],
        )

    def sample(self, limit: int | None, seed: int = 0) -> LabelledSet:
        """A stratified random sample of at most `limit` rows (all rows when limit is None or 0)."""
        if not limit or limit >= len(self):
            return self
        rng = np.random.default_rng(seed)
        labels = np.where(np.isfinite(self.binary), self.binary, -1)
        values, counts = np.unique(labels, return_counts=True)
        # Largest-remainder allocation: shares add up to exactly `limit`, proportional per class.
        exact = limit * counts / counts.sum()
        shares = np.floor(exact).astype(int)
        for j in np.argsort(-(exact - shares), kind="stable")[: limit - shares.sum()]:
            shares[j] += 1
        # A rare class keeps at least one row when the limit allows, taken from the largest.
        for j in np.flatnonzero(shares == 0):
            if limit >= len(values):
                shares[j] += 1
                shares[np.argmax(shares)] -= 1
        picked = [
            rng.choice(np.flatnonzero(labels == v), size=int(k), replace=False)
            for v, k in zip(values, shares, strict=True)
        ]
        return self.subset(np.sort(np.concatenate(picked)))

    def check_part(self, share: float) -> np.ndarray:
        """True for the rows in a fixed `share` of the set, chosen by a hash of each row's id:
        the same rows whatever else is loaded, so a recipe can leave them out of training and a
        benchmark can read them back as unseen text."""
        import hashlib

        cut = int(share * 2**32)
        return np.array(
            [
                int.from_bytes(hashlib.sha256(f"{self.name}:{i}".encode()).digest()[:4], "big")
                < cut
                for i in self.ids
            ],
            dtype=bool,
        )

    def with_negatives(self, negatives: LabelledSet) -> LabelledSet:
        """Add known-safe rows (for all-positive sets, where AUPRC needs something to rank against)."""
        neg = negatives.subset(np.flatnonzero(negatives.binary == 0))
        return LabelledSet(
            f"{self.name}+{negatives.name}-safe",
            self.texts + neg.texts,
            np.concatenate([self.binary, neg.binary]),
            self.native + [None] * len(neg),
            f"{self.licence}; negatives: {negatives.licence}",
            "dev-only" if "dev-only" in (self.use, negatives.use) else self.use,
            self.exclusive,
            f"{self.description} Negatives: the safe rows of {negatives.name}.",
            self.ids + [f"{negatives.name}:{i}" for i in neg.ids],
        )


@dataclass
class LabelMap:
    """Native label -> policy category ids, checked against the policy it is applied to."""

    mapping: Mapping[str, Sequence[str]]
    exclusive: bool | None = None

    @classmethod
    def from_file(cls, path: Path | str) -> LabelMap:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text("utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise LabelMapError(f"{path}: could not read label map: {exc}") from None
        if isinstance(raw, dict) and "map" in raw:
            exclusive = raw.get("exclusive")
            raw = raw["map"]
        else:
            exclusive = None
        if not isinstance(raw, dict):
            raise LabelMapError(
                f"{path}: a label map is a mapping of dataset label -> category id or list of ids"
            )
        mapping: dict[str, list[str]] = {}
        for key, value in raw.items():
            if value is None:
                value = []
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise LabelMapError(
                    f"{path}: '{key}' must map to a category id or a list of ids, got {value!r}"
                )
            mapping[str(key)] = value
        return cls(mapping, exclusive)

    def check(self, policy: LoadedPolicy, source: str = "label map") -> None:
        known = set(policy.category_ids)
        for native, cats in self.mapping.items():
            for cat in cats:
                if cat not in known:
                    hint = ", ".join(sorted(known))
                    raise LabelMapError(
                        f"{source}: '{native}' maps to unknown category '{cat}' in policy "
                        f"{policy.version}; known categories: {hint}"
                    )

    def to_json(self) -> str:
        return json.dumps({k: list(v) for k, v in self.mapping.items()})


def category_labels(
    data: LabelledSet, policy: LoadedPolicy, label_map: LabelMap | None
) -> np.ndarray:
    """Labels per (row, category): 1, 0, or NaN where the data does not say."""
    ids = policy.category_ids
    y = np.full((len(data), len(ids)), np.nan)
    y[data.binary == 0] = 0.0  # a safe row is safe for every category
    if label_map is None:
        return y
    label_map.check(policy)
    col = {c: j for j, c in enumerate(ids)}
    exclusive = data.exclusive if label_map.exclusive is None else label_map.exclusive
    for i, native in enumerate(data.native):
        if native is None or data.binary[i] != 1:
            continue
        mapped = [label_map.mapping.get(part) for part in native.split(NATIVE_SEPARATOR)]
        cats = [c for m in mapped if m is not None for c in m]
        if all(m is None for m in mapped):
            continue  # no native label mapped: say nothing about categories
        if exclusive:
            y[i] = 0.0
        for cat in cats:
            y[i, col[cat]] = 1.0
    return y


def binary_from_categories(y: np.ndarray) -> np.ndarray:
    """Violating if any category is known positive; safe only if every category is known safe."""
    any_pos = (y == 1).any(axis=1)
    all_safe = (y == 0).all(axis=1)
    return np.where(any_pos, 1.0, np.where(all_safe, 0.0, np.nan))
