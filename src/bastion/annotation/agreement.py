"""Agreement between annotators: pure functions, each with the intuition of what it measures.

Agreement tells the policy team whether a rule can be applied consistently. Raw percent
agreement flatters rare labels (two people who both say "safe" to everything agree 95 % on a
5 % problem), so these are chance-corrected. Per decision step, low agreement points at the
question in the policy that people read differently: that step needs rewording or examples.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

from bastion.annotation.schema import Annotation

LOW_AGREEMENT = 0.667
"""Krippendorff's own floor for drawing tentative conclusions from coded data."""


def krippendorff_alpha(units: Sequence[Sequence[Hashable | None]]) -> float:
    """Nominal Krippendorff's alpha over units (items) × coders (annotators), None = not coded.

    1 - observed disagreement / disagreement expected by chance, from the coincidence matrix:
    within each unit coded by m >= 2 coders, every ordered pair of values from two different
    coders adds 1/(m-1). Units with a single value carry no information about agreement and are
    left out. NaN when there is no pair at all or only one value was ever used (nothing to
    disagree about).
    """
    coincidence: defaultdict[tuple[Hashable, Hashable], float] = defaultdict(float)
    for unit in units:
        values = [v for v in unit if v is not None]
        m = len(values)
        if m < 2:
            continue
        for i, a in enumerate(values):
            for j, b in enumerate(values):
                if i != j:
                    coincidence[(a, b)] += 1.0 / (m - 1)
    totals: defaultdict[Hashable, float] = defaultdict(float)
    for (a, _), weight in coincidence.items():
        totals[a] += weight
    n = sum(totals.values())
    observed = sum(w for (a, b), w in coincidence.items() if a != b)
    expected = sum(totals[a] * totals[b] for a in totals for b in totals if a != b)
    if n <= 1 or expected == 0:
        return math.nan
    return 1.0 - (n - 1) * observed / expected


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels on the same items (in the same order).

    (observed agreement - chance agreement) / (1 - chance agreement), chance from each
    annotator's own label frequencies. NaN for no items, or when chance agreement is 1.
    """
    if len(first) != len(second):
        raise ValueError("both annotators must label the same items")
    n = len(first)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p, q = Counter(first), Counter(second)
    chance = sum(p[label] * q[label] for label in p) / (n * n)
    if chance == 1.0:
        return math.nan
    return (observed - chance) / (1.0 - chance)


def pairwise_kappa(
    labels: Mapping[str, Mapping[str, Hashable]],
) -> dict[tuple[str, str], tuple[float, int]]:
    """Cohen's kappa for every pair of annotators, on the items both labelled: (kappa, n)."""
    out: dict[tuple[str, str], tuple[float, int]] = {}
    for a, b in combinations(sorted(labels), 2):
        shared = sorted(set(labels[a]) & set(labels[b]))
        kappa = cohen_kappa([labels[a][i] for i in shared], [labels[b][i] for i in shared])
        out[(a, b)] = (kappa, len(shared))
    return out


def label_alpha(annotations: Mapping[str, Sequence[Annotation]]) -> float:
    """Alpha on the final label (violates or not), items × annotators."""
    return krippendorff_alpha([[a.violation for a in anns] for anns in annotations.values()])


def step_alpha(annotations: Mapping[str, Sequence[Annotation]]) -> dict[str, float]:
    """Alpha per decision step, over the annotators who reached that step on each item.

    An annotator who ended the path before a step says nothing about it; comparing only those
    who answered keeps an early disagreement from being counted again at every later step.
    """
    per_step: dict[str, list[list[Hashable | None]]] = defaultdict(list)
    for anns in annotations.values():
        answers: dict[str, list[Hashable | None]] = defaultdict(list)
        for ann in anns:
            for step in ann.path:
                answers[step.step].append(step.answer.strip().lower())
        for step_id, values in answers.items():
            per_step[step_id].append(values)
    return {step_id: krippendorff_alpha(units) for step_id, units in per_step.items()}


def low_agreement(alphas: Mapping[str, float], floor: float = LOW_AGREEMENT) -> list[str]:
    """The steps whose alpha is below `floor`, worst first (for the policy team)."""
    measured = [(a, s) for s, a in alphas.items() if not math.isnan(a) and a < floor]
    return [s for _, s in sorted(measured)]


def gold_accuracy(
    labels: Mapping[str, Mapping[str, Hashable]], gold: Mapping[str, Hashable]
) -> dict[str, tuple[float, int]]:
    """Per annotator, the share of gold items labelled as the gold answer says: (accuracy, n)."""
    out: dict[str, tuple[float, int]] = {}
    for annotator, theirs in labels.items():
        scored = [item for item in theirs if item in gold]
        right = sum(theirs[item] == gold[item] for item in scored)
        out[annotator] = (right / len(scored) if scored else math.nan, len(scored))
    return out


def acceptance(
    pairs: Sequence[tuple[Annotation, Annotation, bool]],
) -> dict[str, tuple[float, int]]:
    """How often people's verdicts match the pre-annotation, with it shown and in the blind slice.

    `pairs` are (suggestion, the person's annotation, whether the suggestion was hidden). In the
    blind slice the match rate is how often the model is simply right by people's lights; in the
    shown slice it is that plus whatever people accept without checking. The gap between the
    two estimates the anchoring; a gap near zero says suggestions are checked, not rubber-stamped.
    Returns {"shown": (rate, n), "blind": (rate, n)}; NaN rate for an empty slice.
    """
    out: dict[str, tuple[float, int]] = {}
    for name, hidden in (("shown", False), ("blind", True)):
        chosen = [(s, a) for s, a, h in pairs if h == hidden]
        same = sum(s.violation == a.violation for s, a in chosen)
        out[name] = (same / len(chosen) if chosen else math.nan, len(chosen))
    return out
