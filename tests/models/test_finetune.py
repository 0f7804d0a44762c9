"""Encoder fine-tuning: NaN is never a negative, only the top layers move, and they move the right way."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.errors import ModelError
from bastion.models.encoder import _load_sentence_transformer, resolve_encoder_path
from bastion.models.finetune import (
    TOP_LAYERS_FILE,
    TOP_LAYERS_META,
    FineTuneConfig,
    fine_tune,
    load_fine_tuned,
    make_pairs,
    save_top_layers,
)

nan = np.nan

# Two violating categories (0: threats of violence, 1: self-harm) and safe everyday texts.
VIOLENT = [
    "I will find you and break every bone in your body",
    "Meet me outside tonight and I will stab you",
    "I am going to shoot up your house tomorrow",
    "You deserve to be beaten until you stop breathing",
    "I know where you live and I will hurt your family",
    "Keep talking and I will smash your face in",
    "I will burn your car with you inside it",
    "Next time I see you I will kill you",
]
SELF_HARM = [
    "I want to cut myself again tonight",
    "How many pills would it take to never wake up",
    "I keep hurting myself because I deserve the pain",
    "What is the most painless way to end my life",
    "I have been burning my arms with a lighter",
    "Nobody would miss me if I killed myself",
    "I starve myself for days to punish my body",
    "The blade is the only thing that helps me feel",
]
SAFE = [
    "The bakery on the corner sells great sourdough bread",
    "Our football team won the match on Saturday",
    "Remember to water the tomatoes before the heatwave",
    "The train to Leeds is delayed by ten minutes",
    "My grandmother taught me how to knit a scarf",
    "The library opens at nine on weekdays",
    "We painted the kitchen a pale shade of green",
    "The museum has a new exhibition about whales",
]
TEXTS = VIOLENT + SELF_HARM + SAFE
LABELS = np.array([[1.0, 0.0]] * 8 + [[0.0, 1.0]] * 8 + [[0.0, 0.0]] * 8)
PROBE = "a sentence that fine-tuning must not change in the shared encoder"
CONFIG = FineTuneConfig(layers=2, pairs=64, epochs=1, batch_size=16, lr=1e-4, seed=0)


def _base() -> Any:
    return _load_sentence_transformer(str(resolve_encoder_path(None)), "cpu")


def _embed(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(
        model.encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    )


def _separation(emb: np.ndarray) -> float:
    """Mean cosine within each violating class minus mean cosine of violating vs safe."""
    sim = emb @ emb.T
    v, s, safe = slice(0, 8), slice(8, 16), slice(16, 24)
    off = ~np.eye(8, dtype=bool)
    within = (sim[v, v][off].mean() + sim[s, s][off].mean()) / 2
    against = (sim[v, safe].mean() + sim[s, safe].mean()) / 2
    return float(within - against)


def _params(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model[0].auto_model.named_parameters()}


@dataclass
class Tuned:
    model: Any
    base_params: dict[str, Any]
    probe_before: np.ndarray
    steps: list[tuple[int, int]]


@pytest.fixture(scope="module")
def tuned() -> Tuned:
    base = _base()
    base_params = _params(base)
    probe_before = _embed(base, [PROBE])
    steps: list[tuple[int, int]] = []
    model = fine_tune(TEXTS, LABELS, config=CONFIG, progress=lambda d, t: steps.append((d, t)))
    return Tuned(model, base_params, probe_before, steps)


# ----------------------------------------------------------------------------- pairs


def _patchwork() -> np.ndarray:
    """Category 0 labelled everywhere; category 1 unknown (NaN) for half the rows.

    Rows 0-19: violate 0, category 1 known 0.  Rows 20-39: violate 0, category 1 NaN.
    Rows 40-59: violate 1, known 0 for category 0.  Rows 60-79: safe for both.
    Rows 80-99: known 0 for category 0, category 1 NaN (e.g. a binary set that only says "not 0").
    """
    return np.array(
        [[1.0, 0.0]] * 20
        + [[1.0, nan]] * 20
        + [[0.0, 1.0]] * 20
        + [[0.0, 0.0]] * 20
        + [[0.0, nan]] * 20
    )


def test_a_nan_label_is_never_the_negative_side() -> None:
    labels = _patchwork()
    a, b, t = make_pairs(labels, 3000, np.random.default_rng(0))
    neg = t == 0
    for x, y in ((a[neg], b[neg]), (b[neg], a[neg])):
        violates_1 = labels[x, 1] == 1
        # The side opposite a category-1 violation is known 0 for category 1, never NaN.
        assert (labels[y[violates_1], 1] == 0).all()
        unknown_1 = np.isnan(labels[:, 1])
        assert not unknown_1[y[violates_1]].any()
        # In general: whatever one side violates, the other side is labelled 0 there.
        for c in range(2):
            assert (labels[y[labels[x, c] == 1], c] == 0).all()
    # The rule must not be vacuous: category-1 violations do get pushed away from something.
    assert ((labels[a[neg], 1] == 1) | (labels[b[neg], 1] == 1)).sum() > 100


def test_positive_pairs_share_a_category_and_half_are_positive() -> None:
    labels = _patchwork()
    a, b, t = make_pairs(labels, 1000, np.random.default_rng(1))
    assert len(a) == len(b) == len(t) == 1000
    assert set(np.unique(t)) == {0.0, 1.0} and t.mean() == pytest.approx(0.5, abs=0.02)
    pos = t == 1
    shared = ((labels[a[pos]] == 1) & (labels[b[pos]] == 1)).any(axis=1)
    assert shared.all() and (a[pos] != b[pos]).all()
    # Both categories get positive pairs, not only the larger one.
    assert (labels[a[pos], 1] == 1).sum() > 100


def test_sample_weight_makes_each_source_count_equally() -> None:
    # A small source (rows 0-9) and a large one (rows 10-109), each with violations and safe rows.
    labels = np.array([[1.0]] * 5 + [[0.0]] * 5 + [[1.0]] * 50 + [[0.0]] * 50)
    small = np.arange(110) < 10
    weight = np.where(small, 1 / 10, 1 / 100)
    a, b, _ = make_pairs(labels, 2000, np.random.default_rng(2), sample_weight=weight)
    share = small[np.concatenate([a, b])].mean()
    assert 0.4 < share < 0.6
    a, b, _ = make_pairs(labels, 2000, np.random.default_rng(2))
    assert small[np.concatenate([a, b])].mean() < 0.15
    weight[:3] = 0.0  # weight 0: the row never appears
    a, b, _ = make_pairs(labels, 2000, np.random.default_rng(2), sample_weight=weight)
    assert not np.isin(np.concatenate([a, b]), [0, 1, 2]).any()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), "no category has two rows"),
        (np.full((6, 2), nan), "no category has two rows"),
        (np.array([[1.0, nan], [1.0, nan], [1.0, 1.0]]), "no row is labelled 0"),
        # Violations of 0 say nothing about 1; the only 0 labels are on rows that violate 1.
        (np.array([[1.0, nan], [1.0, nan], [0.0, 1.0], [nan, nan]]), "known not to share"),
    ],
)
def test_too_few_labels_is_a_clear_error(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        make_pairs(labels, 10, np.random.default_rng(0))


def test_fine_tune_refuses_data_without_pairs_before_training() -> None:
    with pytest.raises(ModelError, match="no category has two rows"):
        fine_tune(["a", "b"], np.array([[1.0], [0.0]]), config=FineTuneConfig(pairs=10))
    with pytest.raises(ModelError, match="only 6"):
        fine_tune(TEXTS, LABELS, config=FineTuneConfig(layers=7, pairs=10))


def test_config_rejects_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        FineTuneConfig.model_validate({"layers": 2, "learning_rate": 1e-3})


# ----------------------------------------------------------------------------- fine-tuning


@pytest.mark.slow
def test_only_the_top_layers_change(tuned: Tuned) -> None:
    import torch

    after = _params(tuned.model)
    assert after.keys() == tuned.base_params.keys()
    top = ("encoder.layer.4.", "encoder.layer.5.")
    changed_top = 0
    for name, before in tuned.base_params.items():
        if name.startswith(top):
            changed_top += not torch.equal(after[name], before)
        else:  # embeddings, layers 0-3, pooler: bit-identical
            assert torch.equal(after[name], before), name
    for layer in top:
        for part in ("attention.self.query.weight", "intermediate.dense.weight"):
            assert not torch.equal(after[layer + part], tuned.base_params[layer + part])
    assert changed_top >= 28  # of 32 tensors; attention key biases get no gradient by design


@pytest.mark.slow
def test_progress_counts_every_step(tuned: Tuned) -> None:
    total = math.ceil(CONFIG.pairs / CONFIG.batch_size) * CONFIG.epochs
    assert tuned.steps == [(i, total) for i in range(1, total + 1)]


@pytest.mark.slow
def test_violations_move_together_and_away_from_safe(tuned: Tuned) -> None:
    before = _separation(_embed(_base(), TEXTS))
    after = _separation(_embed(tuned.model, TEXTS))
    assert after > before + 0.05, (before, after)


@pytest.mark.slow
def test_the_shared_encoder_is_not_modified(tuned: Tuned) -> None:
    base = _base()
    assert tuned.model is not base
    np.testing.assert_array_equal(_embed(base, [PROBE]), tuned.probe_before)
    assert not np.array_equal(_embed(tuned.model, [PROBE]), tuned.probe_before)


# ----------------------------------------------------------------------------- save / load


@pytest.fixture(scope="module")
def saved(tuned: Tuned, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("finetuned")
    save_top_layers(tuned.model, directory, CONFIG.layers)
    return directory


@pytest.mark.slow
def test_round_trip_is_small_and_embeds_the_same(tuned: Tuned, saved: Path) -> None:
    weights = saved / TOP_LAYERS_FILE
    assert weights.stat().st_size < 10_000_000
    meta = json.loads((saved / TOP_LAYERS_META).read_text("utf-8"))
    assert meta["base_encoder"] == "all-MiniLM-L6-v2" and meta["layers"] == 2
    reloaded = load_fine_tuned(saved)
    cos = (_embed(reloaded, TEXTS) * _embed(tuned.model, TEXTS)).sum(axis=1)
    assert cos.min() > 0.999
    # And it is the fine-tuned model, not the base one.
    assert (_embed(_base(), TEXTS) * _embed(reloaded, TEXTS)).sum(axis=1).min() < 0.999


@pytest.mark.slow
def test_int8_differences_rebuild_every_layer_closer_than_float16(
    tuned: Tuned, tmp_path: Path
) -> None:
    """Every layer trained (here: nudged), saved as int8 differences to the base: half the size
    of float16 copies, and each weight closer to the trained one than float16 would put it."""
    import torch

    model = copy.deepcopy(tuned.model)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".layer." in name:  # the transformer blocks; the embeddings stay the base's
                p.add_(torch.randn(p.shape, generator=gen) * 1e-3)
    half = save_top_layers(model, tmp_path / "f16", 6)
    small = save_top_layers(model, tmp_path / "delta", 6, delta=True)
    assert small.stat().st_size < 0.55 * half.stat().st_size
    meta = json.loads((tmp_path / "delta" / TOP_LAYERS_META).read_text("utf-8"))
    assert meta["dtype"] == "int8-delta" and meta["layers"] == 6
    rebuilt = load_fine_tuned(tmp_path / "delta")
    trained = dict(model.named_parameters())
    for name, p in rebuilt.named_parameters():
        if ".layer." not in name or p.ndim != 2:
            continue
        want = trained[name].detach()
        err = (p.detach() - want).abs().max()
        assert err <= (want.half().float() - want).abs().max(), name
    cos = (_embed(rebuilt, TEXTS) * _embed(model, TEXTS)).sum(axis=1)
    assert cos.min() > 0.9999


def _copy(saved: Path, tmp_path: Path) -> Path:
    for name in (TOP_LAYERS_FILE, TOP_LAYERS_META):
        (tmp_path / name).write_bytes((saved / name).read_bytes())
    return tmp_path


@pytest.mark.slow
def test_load_refuses_a_missing_or_corrupt_file(saved: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"encoder_top\.safetensors are missing"):
        load_fine_tuned(tmp_path)
    d = _copy(saved, tmp_path)
    data = (d / TOP_LAYERS_FILE).read_bytes()
    (d / TOP_LAYERS_FILE).write_bytes(b"\x00\x01garbage" + data[: len(data) // 3])
    with pytest.raises(ModelError, match="cannot read the fine-tuned layers"):
        load_fine_tuned(d)


@pytest.mark.slow
def test_load_refuses_a_wrong_layer_count(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path)
    meta = json.loads((d / TOP_LAYERS_META).read_text("utf-8"))
    (d / TOP_LAYERS_META).write_text(json.dumps({**meta, "total_layers": 12}), "utf-8")
    with pytest.raises(ModelError, match="encoder with 12 layers, but the base encoder has 6"):
        load_fine_tuned(d)
    (d / TOP_LAYERS_META).write_text(json.dumps({**meta, "layers": 3}), "utf-8")
    with pytest.raises(ModelError, match=r"missing: layer\.3\."):
        load_fine_tuned(d)


@pytest.mark.slow
def test_load_refuses_missing_or_misshapen_tensors(saved: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    d = _copy(saved, tmp_path)
    tensors = load_file(str(d / TOP_LAYERS_FILE))
    key = "layer.5.attention.self.query.weight"
    save_file({k: v for k, v in tensors.items() if k != key}, str(d / TOP_LAYERS_FILE))
    with pytest.raises(ModelError, match=f"missing: {key}"):
        load_fine_tuned(d)
    save_file({**tensors, key: tensors[key][:, :100].contiguous()}, str(d / TOP_LAYERS_FILE))
    with pytest.raises(ModelError, match=r"wrong shape: layer\.5\.attention\.self\.query"):
        load_fine_tuned(d)
