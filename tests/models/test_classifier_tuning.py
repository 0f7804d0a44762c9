"""Fine-tuning the whole encoder with the category head: rows drawn by source, batches of similar
length, rare positives up-weighted, NaN never read as safe, and checkpoints that resume the very
same run (and only that run)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import ModelError
from bastion.models.classifier_tuning import (
    CHECKPOINT_FILE,
    ClassifierTuning,
    TuningHistory,
    batch_plan,
    fine_tune_classifier,
    positive_weights,
    source_probabilities,
)
from bastion.models.heads import MultiLabelHead, masked_multilabel_loss

nan = np.nan

# ----------------------------------------------------------------------------- source sampling


def test_temperature_zero_gives_each_source_the_same_mass() -> None:
    source = np.array([2, 0, 1, 1, 2, 2, 2, 1, 2, 1])  # sizes 1, 4, 5, interleaved
    p = source_probabilities(source, 0.0)
    assert p.sum() == pytest.approx(1.0)
    for s in range(3):
        assert p[source == s].sum() == pytest.approx(1 / 3)
        assert np.ptp(p[source == s]) == 0  # shared equally by the source's rows


def test_temperature_one_draws_rows_uniformly() -> None:
    source = np.array([0] * 3 + [1] * 17)
    np.testing.assert_allclose(source_probabilities(source, 1.0), np.full(20, 1 / 20))


def test_temperature_half_weighs_sources_by_the_root_of_their_size() -> None:
    source = np.array([0] * 1 + [1] * 4 + [2] * 16)  # roots 1, 2, 4
    p = source_probabilities(source, 0.5)
    masses = [p[source == s].sum() for s in range(3)]
    np.testing.assert_allclose(masses, [1 / 7, 2 / 7, 4 / 7])
    np.testing.assert_allclose(p[source == 2], 4 / 7 / 16)


# ----------------------------------------------------------------------------- batch plan


def _lengths_and_p() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    lengths = rng.permutation(200) + 5  # every length distinct
    p = np.ones(200)
    p[::3] = 0.0  # these rows may never be drawn
    return lengths, p / p.sum()


def test_batch_plan_has_one_row_of_drawable_indices_per_step() -> None:
    lengths, p = _lengths_and_p()
    plan = batch_plan(lengths, p, steps=20, batch_size=4, rng=np.random.default_rng(0), pool=8)
    assert plan.shape == (20, 4)  # 3 pools of 8 batches drawn, cut to 20 steps
    assert (p[plan] > 0).all()


def test_a_pool_is_cut_into_batches_of_neighbouring_lengths() -> None:
    """The batches of one pool cover disjoint length ranges: a batch pads only to texts of
    similar length. Drawn at random, each batch would span most of the length range."""
    lengths, p = _lengths_and_p()
    plan = batch_plan(lengths, p, steps=16, batch_size=6, rng=np.random.default_rng(1), pool=16)
    batches = sorted((lengths[b] for b in plan), key=lambda x: x.min())
    for lower, upper in itertools.pairwise(batches):
        assert lower.max() <= upper.min()
    # They are not handed out shortest first: their order is shuffled.
    mins = [lengths[b].min() for b in plan]
    assert mins != sorted(mins)


def test_batch_plan_follows_the_probabilities_and_the_seed() -> None:
    lengths = np.array([10, 20, 30, 40])
    p = np.array([0.5, 0.25, 0.25, 0.0])
    plan = batch_plan(lengths, p, steps=500, batch_size=8, rng=np.random.default_rng(3))
    share = np.bincount(plan.ravel(), minlength=4) / plan.size
    np.testing.assert_allclose(share, p, atol=0.02)
    again = batch_plan(lengths, p, steps=500, batch_size=8, rng=np.random.default_rng(3))
    other = batch_plan(lengths, p, steps=500, batch_size=8, rng=np.random.default_rng(4))
    assert np.array_equal(plan, again) and not np.array_equal(plan, other)


# ----------------------------------------------------------------------------- positive weights


def test_rare_positives_are_up_weighted_among_known_labels_only() -> None:
    labels = np.array(
        [
            [1.0, 1.0, nan, 1.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.0, nan, 0.0, 1.0],
            [0.0, nan, nan, 0.0],
        ]
    )
    p = np.full(4, 0.25)
    w = positive_weights(labels, p, cap=10.0)
    assert w.dtype == np.float32
    # 3 negatives per positive; 1 per 1 (NaN rows count for neither side); no positive at all
    # (left at 1); positives the majority (1 negative per 3 positives).
    np.testing.assert_allclose(w, [3.0, 1.0, 1.0, 1 / 3], rtol=1e-6)


def test_positive_weights_follow_the_sampling_distribution_and_the_cap() -> None:
    labels = np.array([[1.0], [0.0], [0.0], [0.0], [0.0], [0.0]])
    # Rows that are never drawn do not count: the positive is as likely as the one drawn negative.
    p = np.array([0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    assert positive_weights(labels, p, cap=10.0)[0] == pytest.approx(1.0)
    uniform = np.full(6, 1 / 6)
    assert positive_weights(labels, uniform, cap=10.0)[0] == pytest.approx(5.0)
    assert positive_weights(labels, uniform, cap=2.0)[0] == pytest.approx(2.0)
    assert positive_weights(1 - labels, uniform, cap=2.0)[0] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full((4, 2), nan), "no row has a known label"),
        (np.array([[0.0, nan], [0.0, 0.0], [nan, 0.0], [0.0, 0.0]]), "no row violates"),
        (np.array([[1.0, nan], [1.0, 1.0], [nan, 1.0], [nan, nan]]), "no row is labelled safe"),
    ],
)
def test_data_that_cannot_teach_a_classifier_is_refused(labels: np.ndarray, message: str) -> None:
    config = ClassifierTuning(steps=1, batch_size=2, max_length=16)
    with pytest.raises(ModelError, match=message):
        fine_tune_classifier(["a", "b", "c", "d"], labels, np.zeros(4, int), config=config)


def test_mismatched_lengths_are_refused() -> None:
    config = ClassifierTuning(steps=1, batch_size=2, max_length=16)
    with pytest.raises(ValueError, match="3 texts, 4 sources"):
        fine_tune_classifier(["a", "b", "c"], np.zeros((3, 1)), np.zeros(4, int), config=config)


def test_config_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        ClassifierTuning.model_validate({"steps": 4, "learning_rate": 1e-3})


# ----------------------------------------------------------------------------- learning

VIOLENT = [
    "I will stab you tonight",
    "I am going to shoot you",
    "I will break your neck",
    "I will burn your house down",
    "you will bleed for this",
    "I will beat you to death",
]
SAFE = [
    "the bread is fresh today",
    "we went to the beach",
    "the train is late again",
    "my cat likes to sleep",
    "the library opens at nine",
    "we painted the kitchen green",
]
TEXTS = VIOLENT + SAFE
# Category 0 is labelled everywhere; category 1 nowhere (a source that never annotated it).
LABELS = np.array([[1.0, nan]] * 6 + [[0.0, nan]] * 6)
HELD_OUT = (
    ["I will hurt you badly", "the soup is warm", "I will end you"],
    np.array([[1.0, nan], [0.0, 0.0], [nan, nan]]),
    np.array([False, False, True]),
)
LEARN = ClassifierTuning(
    steps=12,
    batch_size=8,
    max_length=16,
    lr=1e-4,
    head_lr=0.05,
    weight_decay=0.0,  # so a weight without gradient stays exactly where it started
    warmup=0.1,
    eval_every=6,
    seed=0,
)
PROBE = ["a sentence that fine-tuning must not change in the shared encoder"]


def _base() -> Any:
    from bastion.models.encoder import _load_sentence_transformer, resolve_encoder_path

    return _load_sentence_transformer(str(resolve_encoder_path(None)), "cpu")


def _encode(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(
        model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    )


@dataclass
class Learned:
    model: Any
    head: MultiLabelHead
    history: TuningHistory
    progress: list[tuple[int, int]]
    probe_before: np.ndarray


@pytest.fixture(scope="module")
def learned() -> Learned:
    probe_before = _encode(_base(), PROBE)
    calls: list[tuple[int, int]] = []
    model, head, history = fine_tune_classifier(
        TEXTS,
        LABELS,
        np.zeros(len(TEXTS), int),
        config=LEARN,
        validation=HELD_OUT,
        progress=lambda done, total: calls.append((done, total)),
    )
    return Learned(model, head, history, calls, probe_before)


@pytest.mark.slow
def test_the_head_scores_violations_above_safe_texts(learned: Learned) -> None:
    p = learned.head.predict_proba(_encode(learned.model, TEXTS))[:, 0]
    assert p[:6].min() > p[6:].max(), p
    assert p[:6].mean() > 0.7 and p[6:].mean() < 0.3, p


@pytest.mark.slow
def test_a_category_labelled_nowhere_is_never_pushed(learned: Learned) -> None:
    """Category 1 is NaN on every row: its logit gets no gradient, so its weights are exactly the
    initial ones. Reading NaN as "safe" would drive its bias down."""
    import torch

    start = MultiLabelHead(hidden=0, dropout=0.1, seed=LEARN.seed)._build(384, 2)
    assert isinstance(start, torch.nn.Sequential)
    initial: Any = start[1]
    final: Any = learned.head.model_[1]  # type: ignore[attr-defined]
    assert torch.equal(final.weight[1], initial.weight[1])
    assert torch.equal(final.bias[1], initial.bias[1])
    assert not torch.equal(final.weight[0], initial.weight[0])  # category 0 did learn


@pytest.mark.slow
def test_every_layer_learns_but_the_embedding_table(learned: Learned) -> None:
    import torch

    base = dict(_base()[0].auto_model.named_parameters())
    tuned = dict(learned.model[0].auto_model.named_parameters())
    assert tuned.keys() == base.keys()
    for name, before in base.items():
        if name.startswith("embeddings."):
            assert torch.equal(tuned[name], before), name
    for layer in range(6):
        name = f"encoder.layer.{layer}.attention.self.query.weight"
        assert not torch.equal(tuned[name], base[name]), name
    assert not any(q.requires_grad for q in learned.model.parameters())
    assert not learned.model.training


@pytest.mark.slow
def test_the_shared_encoder_is_not_modified(learned: Learned) -> None:
    assert learned.model is not _base()
    np.testing.assert_array_equal(_encode(_base(), PROBE), learned.probe_before)
    assert not np.array_equal(_encode(learned.model, PROBE), learned.probe_before)


@pytest.mark.slow
def test_progress_and_the_learning_curve(learned: Learned) -> None:
    import torch

    assert learned.progress == [(i, 12) for i in range(1, 13)]
    history = learned.history
    assert history.resumed_from == 0
    assert history.steps == [12] and len(history.train_loss) == 1
    assert history.val_steps == [6, 12]
    # The last held-out loss is the masked loss of the returned model on the held-out rows
    # (dropout off): the NaN cells and the at-least-one row count as the objective says.
    texts, y, a1 = HELD_OUT
    head_net = learned.head.model_  # type: ignore[attr-defined]
    with torch.no_grad():
        logits = head_net(torch.from_numpy(_encode(learned.model, texts)))
        expected = masked_multilabel_loss(
            logits,
            torch.from_numpy(y.astype(np.float32)),
            torch.ones(len(texts)),
            torch.from_numpy(a1),
            torch.from_numpy(learned.head.pos_weight_),
        )
    assert history.val_loss[-1] == pytest.approx(float(expected), rel=1e-4)
    assert learned.head.n_categories_ == 2


@pytest.mark.slow
def test_the_embedding_table_trains_when_not_frozen() -> None:
    import torch

    config = ClassifierTuning(steps=2, batch_size=4, max_length=16, freeze_embeddings=False)
    tuned: Any
    tuned, _, _ = fine_tune_classifier(TEXTS, LABELS, np.zeros(len(TEXTS), int), config=config)
    name = "embeddings.word_embeddings.weight"
    base = dict(_base()[0].auto_model.named_parameters())[name]
    assert not torch.equal(dict(tuned[0].auto_model.named_parameters())[name], base)


# ----------------------------------------------------------------------------- start and share


def _head_with(weight: float, bias: float) -> MultiLabelHead:
    import torch

    head = MultiLabelHead(hidden=0, dropout=0.1, seed=3)
    net: Any = head._build(384, 2)
    with torch.no_grad():
        net[1].weight.fill_(weight)
        net[1].bias.fill_(bias)
    head.model_ = net
    return head


def _state(module: Any) -> dict[str, Any]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.slow
def test_the_head_starts_from_the_given_head() -> None:
    """A linear probe's head goes in as the start: with learning rates near zero it comes out
    as it went in (a random start would not)."""
    start = _head_with(0.01, -0.5)
    still = LEARN.model_copy(update={"steps": 1, "lr": 1e-12, "head_lr": 1e-12})
    _, head, _ = fine_tune_classifier(
        TEXTS, LABELS, np.zeros(len(TEXTS), int), config=still, init_head=start
    )
    for name, value in head.state_dict().items():
        np.testing.assert_allclose(value, start.state_dict()[name], atol=1e-6)


@pytest.mark.slow
def test_a_share_below_one_lands_between_the_start_and_the_fine_tuned_weights() -> None:
    """WiSE-FT: the same run with share 0.25 returns start + 0.25 x (fine-tuned - start), for
    every encoder weight (the start is the base) and for the head (the start is the given head)."""
    start = _head_with(0.0, 0.0)
    config = LEARN.model_copy(update={"steps": 2})
    runs = {}
    for share in (1.0, 0.25):
        model, head, _ = fine_tune_classifier(
            TEXTS, LABELS, np.zeros(len(TEXTS), int),
            config=config.model_copy(update={"fine_tuned_share": share}), init_head=start,
        )  # fmt: skip
        runs[share] = (_state(model), head.state_dict())
    base = _state(_base())
    (full, full_head), (quarter, quarter_head) = runs[1.0], runs[0.25]
    moved = 0
    for name, value in full.items():
        if not value.is_floating_point():
            continue
        expected = base[name] + 0.25 * (value - base[name])
        np.testing.assert_allclose(quarter[name].numpy(), expected.numpy(), atol=1e-6)
        moved += int(not bool((value == base[name]).all()))
    assert moved > 20  # the fine-tuned run did move the layers
    for name, value in full_head.items():
        expected = start.state_dict()[name] + 0.25 * (value - start.state_dict()[name])
        np.testing.assert_allclose(quarter_head[name], expected, atol=1e-6)
        assert not np.allclose(value, start.state_dict()[name])


def test_the_share_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="fine_tuned_share"):
        ClassifierTuning(fine_tuned_share=1.5)
    with pytest.raises(ValueError, match="head_init"):
        ClassifierTuning.model_validate({"head_init": "zeros"})


# ----------------------------------------------------------------------------- checkpoints

R_TEXTS = [*VIOLENT[:4], *SAFE[:4]]
R_LABELS = np.array([[1.0, 0.0], [1.0, nan], [0.0, 1.0], [1.0, 0.0]] + [[0.0, 0.0]] * 4)
R_SOURCE = np.array([0, 0, 0, 0, 0, 0, 1, 1])  # unequal sizes: the source changes the sampling
R_CONFIG = ClassifierTuning(
    steps=4, batch_size=4, max_length=16, head_lr=0.01, checkpoint_every=2, eval_every=2, seed=1
)


def _run(
    checkpoint_dir: Path | None,
    *,
    labels: np.ndarray = R_LABELS,
    source: np.ndarray = R_SOURCE,
    at_least_one: np.ndarray | None = None,
    config: ClassifierTuning = R_CONFIG,
    stop_after: int | None = None,
) -> tuple[dict[str, Any], TuningHistory, list[int]]:
    """Encoder and head weights, history and the steps reported by progress; `stop_after`
    interrupts the run as Ctrl-C would, after that step."""
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        seen.append(done)
        if done == stop_after:
            raise KeyboardInterrupt

    model, head, history = fine_tune_classifier(
        R_TEXTS,
        labels,
        source,
        config=config,
        at_least_one=at_least_one,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
    )
    weights = {f"encoder.{k}": v.clone() for k, v in model.state_dict().items()}
    weights.update({f"head.{k}": v.clone() for k, v in head.model_.state_dict().items()})  # type: ignore[attr-defined]
    return weights, history, seen


def _same(a: dict[str, Any], b: dict[str, Any], exact: bool = False) -> bool:
    import torch

    assert a.keys() == b.keys()
    match: Callable[[Any, Any], bool] = (
        torch.equal if exact else (lambda x, y: torch.allclose(x, y, rtol=1e-5, atol=1e-6))
    )
    return all(match(a[k], b[k]) for k in a)


@dataclass
class Finished:
    directory: Path
    weights: dict[str, Any]
    history: TuningHistory


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The reference: one uninterrupted run, checkpointing as it goes."""
    directory = tmp_path_factory.mktemp("finished")
    weights, history, seen = _run(directory)
    assert seen == [1, 2, 3, 4] and history.resumed_from == 0
    return Finished(directory, weights, history)


def _checkpoint_into(finished: Finished, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(finished.directory / CHECKPOINT_FILE, directory / CHECKPOINT_FILE)
    return directory


@pytest.mark.slow
def test_a_finished_run_is_not_trained_again(finished: Finished, tmp_path: Path) -> None:
    directory = _checkpoint_into(finished, tmp_path / "again")
    weights, history, seen = _run(directory)
    assert seen == []  # no step run
    assert history.resumed_from == 4
    assert _same(weights, finished.weights, exact=True)
    assert history.steps == finished.history.steps == [4]


@pytest.mark.slow
def test_an_interrupted_run_resumes_and_ends_as_if_never_stopped(
    finished: Finished, tmp_path: Path
) -> None:
    # Stopped after step 3: the last checkpoint is step 2, so step 3 is done again.
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, stop_after=3)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    weights, history, seen = _run(tmp_path)
    assert history.resumed_from == 2
    assert seen == [3, 4]
    assert _same(weights, finished.weights)


def _other_labels() -> dict[str, Any]:
    labels = R_LABELS.copy()
    labels[1, 1] = 0.0  # one unknown cell now known
    return {"labels": labels}


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    [
        pytest.param(_other_labels, id="labels"),
        pytest.param(
            lambda: {"config": R_CONFIG.model_copy(update={"head_lr": 0.02})}, id="settings"
        ),
        pytest.param(
            lambda: {"source": np.array([0, 0, 1, 1, 1, 1, 1, 1])},
            id="sources",
        ),
        pytest.param(
            lambda: {"at_least_one": np.array([False] * 7 + [True])},
            id="at_least_one",
        ),
    ],
)
def test_a_checkpoint_of_other_data_or_settings_is_ignored_and_replaced(
    finished: Finished, tmp_path: Path, change: Callable[[], dict[str, Any]]
) -> None:
    directory = _checkpoint_into(finished, tmp_path)
    kwargs = change()
    _, history, seen = _run(directory, **kwargs)
    assert history.resumed_from == 0 and seen == [1, 2, 3, 4]
    # The checkpoint now belongs to this run: running it again does no work.
    _, again, seen = _run(directory, **kwargs)
    assert again.resumed_from == 4 and seen == []


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "not a checkpoint"])
def test_an_unreadable_checkpoint_is_ignored(
    finished: Finished, tmp_path: Path, damage: str
) -> None:
    import torch

    target = tmp_path / CHECKPOINT_FILE
    data = (finished.directory / CHECKPOINT_FILE).read_bytes()
    if damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x00\x01 not a torch file" * 50)
    else:
        torch.save([1, 2, 3], target)
    weights, history, seen = _run(tmp_path)
    assert history.resumed_from == 0 and seen == [1, 2, 3, 4]
    assert _same(weights, finished.weights)  # trained from scratch, as the reference was
