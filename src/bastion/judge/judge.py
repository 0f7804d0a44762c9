"""The LLM policy judge: an LLM reads one policy category and judges an item against it.

Two ways to get a judgement, chosen by `mode`:

- "generate": the model writes the JSON judgement (constrained by the schema where the backend
  can). It is checked against the schema and the policy; a bad answer is sent back once with
  its problems listed (a constrained retry); a second bad answer is a failed judgement, never
  "safe".
- "score": the model answers each decision step as a scored choice (log-probabilities of the
  allowed answers). The path follows the likeliest answer at each step, and P(violating) is the
  probability of reaching a violating verdict through the steps, so the judgement is consistent
  with the policy by construction. This is what a small base model can do well enough to be
  useful, and it costs one output token per step.

"auto" scores with backends that cannot constrain decoding (the local one) and generates with
those that can. Judgements are cached by (policy version, category, backend, settings, content).
"""

from __future__ import annotations

import hashlib
import io
import math
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bastion.errors import BastionError, InputError
from bastion.items import Item, as_item
from bastion.judge.backend import ChatRequest, ChoiceRequest, JudgeBackend, Usage
from bastion.judge.schema import (
    Judgement,
    StepAnswer,
    answer_schema,
    check_judgement,
    parse_judgement,
)
from bastion.media.limits import MediaLimits
from bastion.policy import Category, LoadedPolicy
from bastion.policy.render import Example, render_category, render_content

Mode = Literal["auto", "generate", "score"]
MODES = ("auto", "generate", "score")
MAX_IMAGE_SIDE = 1024


@dataclass
class JudgeResult:
    """One (item, category) judgement, or why there is none (`error`; probability NaN).

    `repaired` says a repair was asked for (the first answer was unusable), whether or not the
    second answer was usable; `cached` that no call was made.
    """

    category: str
    judgement: Judgement | None
    mode: str
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    cached: bool = False
    repaired: bool = False

    @property
    def probability(self) -> float:
        return self.judgement.probability if self.judgement is not None else math.nan

    def as_dict(self) -> dict[str, object]:
        return {
            "category": self.category,
            "mode": self.mode,
            "judgement": self.judgement.model_dump() if self.judgement else None,
            "probability": None if self.judgement is None else round(self.probability, 6),
            "error": self.error,
            "cached": self.cached,
            "repaired": self.repaired,
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "latency_s": round(self.usage.latency_s, 4),
                "calls": self.usage.calls,
                "retries": self.usage.retries,
            },
        }


class JudgementCache:
    """Successful judgements by key, in SQLite (a file, or memory when `path` is None).

    Failures are not cached: a timeout today should be retried tomorrow.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS judgement (key TEXT PRIMARY KEY, body TEXT)")
        self._lock = threading.Lock()

    def get(self, key: str) -> Judgement | None:
        with self._lock:
            row = self._db.execute("SELECT body FROM judgement WHERE key = ?", (key,)).fetchone()
        return Judgement.model_validate_json(row[0]) if row else None

    def put(self, key: str, judgement: Judgement) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO judgement VALUES (?, ?)", (key, judgement.model_dump_json())
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM judgement").fetchone()[0])


@dataclass(frozen=True)
class LabelledExample:
    """A user's labelled text for few-shot prompting: violating `category` or not."""

    text: str
    category: str
    violating: bool


class LLMJudge:
    """Judges items against a policy's categories with an LLM backend.

    `few_shot` examples per (item, category) are chosen by similarity, half violating and half
    not, from the category's own examples plus `examples` (the user's labelled ones); they need
    `encoder` (anything with `encode(texts) -> array`). With few_shot=0 the prompt carries
    `policy_examples` of the policy's examples of each kind instead, fixed for every item.
    """

    def __init__(
        self,
        policy: LoadedPolicy,
        backend: JudgeBackend,
        *,
        mode: Mode = "auto",
        few_shot: int = 0,
        examples: Sequence[LabelledExample] = (),
        encoder: object | None = None,
        policy_examples: int = 2,
        cache: JudgementCache | None = None,
        max_tokens: int = 512,
        media_limits: MediaLimits | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"judge mode '{mode}' is not one of {', '.join(MODES)}")
        self.policy = policy
        self.backend = backend
        self.mode: Literal["generate", "score"] = (
            mode if mode != "auto" else ("generate" if backend.constrained else "score")
        )
        self.few_shot = few_shot
        self.policy_examples = 0 if few_shot else policy_examples
        self.cache = cache if cache is not None else JudgementCache()
        self.max_tokens = max_tokens
        self.media_limits = media_limits or MediaLimits()
        self._prompts: dict[str, str] = {}
        self._shots = _ExamplePool(policy, examples, encoder) if few_shot else None
        shown = hashlib.sha256(repr(list(examples) if few_shot else []).encode()).hexdigest()
        settings = f"{self.mode}|{few_shot}|{self.policy_examples}|{max_tokens}|{shown[:16]}"
        self.fingerprint = f"{policy.version}|{backend.name}|{settings}"
        """What a cached judgement must match beyond the content: policy version (which
        includes its content hash), model, mode, prompt settings and the user's examples."""

    def system_prompt(self, category_id: str) -> str:
        if category_id not in self._prompts:
            category = self.policy.policy.category(category_id)
            self._prompts[category_id] = render_category(
                self.policy.policy, category, examples=self.policy_examples
            )
        return self._prompts[category_id]

    def judge(
        self, items: Sequence[Item | str], categories: Sequence[str] | None = None
    ) -> list[list[JudgeResult]]:
        """Every item against every category given (default: all), in order."""
        wanted = list(categories) if categories is not None else self.policy.category_ids
        unknown = [c for c in wanted if c not in self.policy.category_ids]
        if unknown:
            raise InputError(
                f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)} "
                f"in policy {self.policy.version}"
            )
        ready = [as_item(i) for i in items]
        flat = self.judge_pairs([(item, c) for item in ready for c in wanted])
        k = len(wanted)
        return [flat[i * k : (i + 1) * k] for i in range(len(ready))]

    def judge_pairs(self, pairs: Sequence[tuple[Item, str]]) -> list[JudgeResult]:
        """One result per (item, category id); cached ones are not asked again."""
        results: list[JudgeResult | None] = [None] * len(pairs)
        todo: list[tuple[int, Item, Category, str, tuple[bytes, ...], str]] = []
        # An item asked about several categories is decoded and re-encoded once.
        decoded: dict[int, tuple[bytes, ...] | str] = {}
        for k, (item, cid) in enumerate(pairs):
            category = self.policy.policy.category(cid)
            if id(item) not in decoded:
                try:
                    decoded[id(item)] = _images(item, self.media_limits)
                except (BastionError, OSError, ValueError) as exc:  # fails this item only
                    decoded[id(item)] = f"image refused: {exc}"
            images = decoded[id(item)]
            if isinstance(images, str):
                results[k] = JudgeResult(cid, None, self.mode, error=images)
                continue
            if images and not self.backend.vision:
                results[k] = JudgeResult(
                    cid,
                    None,
                    self.mode,
                    error=f"backend {self.backend.name} cannot see images; use a vision model",
                )
                continue
            if not item.text.strip() and not images:
                results[k] = JudgeResult(cid, None, self.mode, error="nothing to judge")
                continue
            key = self._key(item, cid, images)
            hit = self.cache.get(key)
            if hit is not None:
                results[k] = JudgeResult(cid, hit, self.mode, cached=True)
                continue
            todo.append((k, item, category, self._user(item, category), images, key))
        fresh = self._score(todo) if self.mode == "score" else self._generate(todo)
        for (k, *_rest, key), result in zip(todo, fresh, strict=True):
            if result.judgement is not None:
                self.cache.put(key, result.judgement)
            results[k] = result
        return [r for r in results if r is not None]

    def _user(self, item: Item, category: Category) -> str:
        shots = self._shots.choose(item.text, category.id, self.few_shot) if self._shots else []
        return render_content(item.text, examples=shots)

    def _key(self, item: Item, cid: str, images: tuple[bytes, ...]) -> str:
        digest = hashlib.sha256(f"{self.fingerprint}|{cid}|".encode())
        digest.update(item.text.encode())
        for png in images:
            digest.update(hashlib.sha256(png).digest())
        return digest.hexdigest()

    def _generate(
        self, todo: Sequence[tuple[int, Item, Category, str, tuple[bytes, ...], str]]
    ) -> list[JudgeResult]:
        schema = answer_schema() if self.backend.constrained else None
        requests = [
            ChatRequest(
                self.system_prompt(cat.id),
                user,
                images,
                json_schema=schema,
                max_tokens=self.max_tokens,
            )
            for _, _, cat, user, images, _ in todo
        ]
        replies = self.backend.chat(requests)
        results: list[JudgeResult] = []
        retry: list[int] = []
        retry_requests: list[ChatRequest] = []
        for n, ((_, item, cat, _, _, _), reply) in enumerate(zip(todo, replies, strict=True)):
            result = JudgeResult(cat.id, None, "generate", usage=reply.usage)
            results.append(result)
            if reply.text is None:
                result.error = f"the LLM call failed: {reply.error}"
                continue
            judgement, problems = _checked(reply.text, cat, item.text)
            if judgement is not None:
                result.judgement = judgement
                continue
            retry.append(n)
            retry_requests.append(
                ChatRequest(
                    requests[n].system,
                    requests[n].user,
                    requests[n].images,
                    turns=(("assistant", reply.text), ("user", _repair_message(problems))),
                    json_schema=answer_schema(),
                    max_tokens=self.max_tokens,
                )
            )
            result.error = "; ".join(problems)
        for n, reply in zip(retry, self.backend.chat(retry_requests), strict=True):
            result, (_, item, cat, *_) = results[n], todo[n]
            result.usage.add(reply.usage)
            result.repaired = True
            if reply.text is None:
                result.error = (
                    f"the repair call failed: {reply.error} (first answer: {result.error})"
                )
                continue
            judgement, problems = _checked(reply.text, cat, item.text)
            result.judgement = judgement
            result.error = (
                None
                if judgement is not None
                else "the answer was unusable after one repair: " + "; ".join(problems)
            )
        return results

    def _score(
        self, todo: Sequence[tuple[int, Item, Category, str, tuple[bytes, ...], str]]
    ) -> list[JudgeResult]:
        requests = [
            ChoiceRequest(self.system_prompt(cat.id), user, _questions(cat), images)
            for _, _, cat, user, images, _ in todo
        ]
        results = []
        for (_, _, cat, *_), reply in zip(todo, self.backend.choose(requests), strict=True):
            result = JudgeResult(cat.id, None, "score", usage=reply.usage)
            if reply.error is not None or len(reply.logprobs) != len(_questions(cat)):
                result.error = f"the LLM call failed: {reply.error or 'wrong number of answers'}"
            else:
                result.judgement = judgement_from_choices(
                    cat, [np.exp(lp) for lp in reply.logprobs]
                )
            results.append(result)
        return results


DIRECT_QUESTION = "Does the content violate this policy category?"


def _questions(category: Category) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The decision steps as scored questions, or one direct question if there are none."""
    if not category.decision_steps:
        return ((DIRECT_QUESTION, ("yes", "no")),)
    return tuple((s.question, tuple(a.answer for a in s.answers)) for s in category.decision_steps)


def judgement_from_choices(category: Category, probs: Sequence[np.ndarray]) -> Judgement:
    """A judgement from per-step answer probabilities (each step scored given the content).

    P(violating) sums, over every route through the steps to a violating verdict, the product
    of its answers' probabilities: the chance that the steps, answered as the model would,
    end in "violating". The verdict is the likelier outcome, and the decision path is the most
    probable route that ends in it, so the path, the verdict and the confidence always agree.
    """
    if not category.decision_steps:
        p = float(probs[0][0])
        violation = p >= 0.5
        return Judgement(
            violation=violation,
            categories=[category.id] if violation else [],
            severity=category.severity if violation else 0,
            rule_ids=[],
            confidence=p if violation else 1.0 - p,
            decision_path=[],
            rationale=f"Scored answer to '{DIRECT_QUESTION}': P(yes) = {p:.2f}.",
        )
    steps = {s.id: (s, probs[k]) for k, s in enumerate(category.decision_steps)}
    memo: dict[str, float] = {}

    def p_violating(step_id: str) -> float:
        if step_id not in memo:
            step, p = steps[step_id]
            memo[step_id] = sum(
                float(q) * (p_violating(a.next) if a.next else float(a.verdict == "violating"))
                for a, q in zip(step.answers, p, strict=True)
            )
        return memo[step_id]

    def best_route(step_id: str, verdict: str) -> tuple[float, list[tuple[str, int]]]:
        """The most probable route from this step to `verdict`: (probability, [(step, answer)])."""
        step, p = steps[step_id]
        best: tuple[float, list[tuple[str, int]]] = (-1.0, [])
        for k, (a, q) in enumerate(zip(step.answers, p, strict=True)):
            if a.next is not None:
                rest, route = best_route(a.next, verdict)
                candidate = (float(q) * rest, [(step_id, k), *route]) if rest >= 0 else (-1.0, [])
            else:
                candidate = (float(q), [(step_id, k)]) if a.verdict == verdict else (-1.0, [])
            if candidate[0] > best[0]:
                best = candidate
        return best

    first = category.decision_steps[0].id
    p_total = p_violating(first)
    violation = p_total >= 0.5
    route_p, route = best_route(first, "violating" if violation else "not_violating")
    path = [StepAnswer(step=sid, answer=steps[sid][0].answers[k].answer) for sid, k in route]
    said = "; ".join(
        f"{sid}: {steps[sid][0].answers[k].answer} ({float(steps[sid][1][k]):.2f})"
        for sid, k in route
    )
    last = steps[route[-1][0]][0].answers[route[-1][1]]
    return Judgement(
        violation=violation,
        categories=[category.id] if violation else [],
        severity=category.severity if violation else 0,
        rule_ids=[last.rule] if violation and last.rule else [],
        confidence=p_total if violation else 1.0 - p_total,
        decision_path=path,
        rationale=(
            f"Decision steps answered by scored choice: P(violating) over all routes = "
            f"{p_total:.2f}; likeliest route to the verdict ({route_p:.2f}): {said}."
        ),
    )


def _checked(raw: str, category: Category, text: str) -> tuple[Judgement | None, list[str]]:
    judgement, problems = parse_judgement(raw)
    if judgement is not None:
        problems = check_judgement(judgement, category, text)
    return (judgement if not problems else None), problems


def _repair_message(problems: Sequence[str]) -> str:
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"That answer cannot be used:\n{listed}\n"
        "Reply again with only the corrected JSON object, following the answer format and the "
        "decision steps exactly."
    )


class _ExamplePool:
    """Policy and user examples per category, embedded once, for similarity-chosen few-shot."""

    def __init__(
        self, policy: LoadedPolicy, extra: Sequence[LabelledExample], encoder: object | None
    ) -> None:
        if encoder is None:
            from bastion.models.encoder import load_encoder

            encoder = load_encoder(None)
        self.encoder = encoder
        pool: list[LabelledExample] = []
        for c in policy.policy.categories:
            pool += [LabelledExample(t, c.id, True) for t in c.examples.positive]
            pool += [LabelledExample(t, c.id, False) for t in c.examples.negative]
        self.examples = pool + list(extra)
        self._vectors: np.ndarray | None = None

    def choose(self, text: str, category: str, k: int) -> list[Example]:
        if self._vectors is None:
            self._vectors = _unit(self.encoder.encode([e.text for e in self.examples]))  # type: ignore[attr-defined]
        query = _unit(self.encoder.encode([text]))[0]  # type: ignore[attr-defined]
        sims = self._vectors @ query
        chosen: list[tuple[float, LabelledExample]] = []
        for violating, share in ((True, (k + 1) // 2), (False, k // 2)):
            idx = [
                i
                for i, e in enumerate(self.examples)
                if e.category == category and e.violating == violating and e.text != text
            ]
            idx.sort(key=lambda i: -sims[i])
            chosen += [(float(sims[i]), self.examples[i]) for i in idx[:share]]
        chosen.sort(key=lambda pair: pair[0])  # the most similar last, next to the content
        return [Example(e.text, e.violating) for _, e in chosen]


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    out: np.ndarray = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return out


def _images(item: Item, limits: MediaLimits) -> tuple[bytes, ...]:
    """The item's images as PNG (first frame, at most 1024 px a side), decoded under limits."""
    if not item.images:
        return ()
    from PIL import Image

    if item.decoded is not None and item.decoded.images:
        frames = [image.frames[0] for image in item.decoded.images]
    else:
        from bastion.media.decode import decode_image

        frames = [decode_image(source, limits).frames[0] for source in item.images]
    out = []
    for frame in frames:
        picture = Image.fromarray(frame)
        picture.thumbnail((MAX_IMAGE_SIDE, MAX_IMAGE_SIDE))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return tuple(out)
