"""Training from a recipe: sources in, a model that moderates out, licences enforced."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.errors import BastionError
from bastion.models.artifact import ModelArtifact
from bastion.models.training import Recipe, TrainingData, source_weights, split, train
from bastion.moderator import Moderator


def _recipe(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(body)
    return path


def test_a_shipped_model_refuses_dev_only_data(tmp_path: Path) -> None:
    recipe = Recipe.from_file(
        _recipe(tmp_path, "name: x\nship: true\nsources: [{dataset: toxicchat}]\n")
    )
    with pytest.raises(BastionError, match=r"toxicchat' is dev-only .*only ship-ok"):
        train(recipe, tmp_path / "m", cache_path=tmp_path / "c.sqlite")


def test_recipe_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(BastionError, match="invalid recipe: sourcez"):
        Recipe.from_file(_recipe(tmp_path, "name: x\nsources: []\nsourcez: 1\n"))


def test_sources_weigh_the_same_and_split_per_source() -> None:
    source = np.array([0] * 90 + [1] * 10)
    w = source_weights(source)
    assert w[:90].sum() == pytest.approx(w[90:].sum())
    data = TrainingData(["t"] * 100, np.zeros((100, 1)), source)
    tr, stop, cal = split(data, (0.2, 0.1), seed=0)
    assert len(np.intersect1d(tr, stop)) == len(np.intersect1d(stop, cal)) == 0
    assert len(tr) + len(stop) + len(cal) == 100
    assert (source[stop] == 1).sum() == 2 and (source[cal] == 1).sum() == 1


@pytest.mark.slow
def test_train_from_policy_examples_then_moderate(tmp_path: Path) -> None:
    recipe = Recipe.from_file(
        _recipe(
            tmp_path,
            "name: tiny\npolicy: openai\nsources: [{policy_examples: true}]\n"
            "head: {epochs: 200, lr: 0.01}\nmin_positives: 5\n",
        )
    )
    art = train(recipe, tmp_path / "m", cache_path=tmp_path / "c.sqlite")
    assert (tmp_path / "m" / "head.safetensors").exists()
    m = ModelArtifact.load(tmp_path / "m").manifest
    assert m.sources[0].name == "policy:openai" and m.sources[0].use == "ship-ok"
    assert m.sources[0].rows == 13 * 36 and m.sources[0].positives == 13 * 18
    assert m.zero_shot_fallback == []
    assert set(m.thresholds) == set(art.manifest.categories)
    mod = Moderator("openai", model=tmp_path / "m")
    threat, python = mod.moderate(
        ["I will find where you live and hurt you", "How do I kill a Python process?"]
    )
    assert (
        threat.category_scores["harassment/threatening"]
        > python.category_scores["harassment/threatening"] + 0.3
    )
    assert threat.model_version.startswith("trained:tiny")
    shown = CliRunner().invoke(app, ["model", "show", str(tmp_path / "m")])
    assert shown.exit_code == 0 and "policy:openai" in shown.stdout


@pytest.mark.slow
def test_categories_without_data_fall_back_to_zero_shot(
    tmp_path: Path, datasets_root: Path
) -> None:
    recipe = Recipe.from_file(
        _recipe(
            tmp_path,
            "name: hate-only\npolicy: openai\nsources: [{dataset: davidson, max_rows: 400}]\n"
            "head: {epochs: 50}\n",
        )
    )
    art = train(recipe, tmp_path / "m", data_root=datasets_root, cache_path=tmp_path / "c.sqlite")
    m = art.manifest
    assert "hate" not in m.zero_shot_fallback and "self-harm/intent" in m.zero_shot_fallback
    src = m.sources[0]
    assert src.licence.startswith("MIT") and src.rows < 400  # 'offensive' rows say nothing: dropped
    mod = Moderator("openai", model=tmp_path / "m")
    v = mod.moderate_one("I can't go on, tonight I'm going to end my life")
    zero = Moderator("openai").moderate_one("I can't go on, tonight I'm going to end my life")
    assert v.category_scores["self-harm/intent"] == pytest.approx(
        zero.category_scores["self-harm/intent"], abs=1e-6
    )


def test_safe_text_files_are_negatives_for_every_category(tmp_path: Path) -> None:
    from bastion.models.training import assemble
    from bastion.policy import load_policy

    (tmp_path / "safe.txt").write_text("kill the stuck process\n\nthis exam is murdering me\n")
    recipe = Recipe.from_file(
        _recipe(
            tmp_path,
            "name: x\nship: true\nsources:\n"
            "  - {safe_texts: safe.txt, licence: written for us, use: ship-ok}\n",
        )
    )
    data = assemble(recipe, load_policy("openai"))
    assert data.texts == ["kill the stuck process", "this exam is murdering me"]
    assert (data.labels == 0).all() and data.labels.shape == (2, 13)
    assert data.sources[0].licence == "written for us" and data.sources[0].positives == 0
    assert "base_dir" not in recipe.model_dump()


def test_safe_text_files_need_a_licence_and_respect_ship(tmp_path: Path) -> None:
    from bastion.models.training import assemble
    from bastion.policy import load_policy

    (tmp_path / "safe.txt").write_text("hello\n")
    no_licence = Recipe.from_file(_recipe(tmp_path, "name: x\nsources: [{safe_texts: safe.txt}]\n"))
    with pytest.raises(BastionError, match="give its `licence` and `use`"):
        assemble(no_licence, load_policy("openai"))
    dev = Recipe.from_file(
        _recipe(
            tmp_path,
            "name: x\nship: true\nsources: [{safe_texts: safe.txt, licence: NC, use: dev-only}]\n",
        )
    )
    with pytest.raises(BastionError, match=r"ships its model, but safe\.txt is dev-only"):
        assemble(dev, load_policy("openai"))


class _StubLabeller:
    def window_probs(self, emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.column_stack([emb[:, 0], emb[:, 1], 1 - emb[:, 0]]), np.zeros(0)


def test_inferred_category_is_the_only_label_set() -> None:
    from bastion.models.training import infer_categories

    labels = np.array([[0.0, 0.0, 0.0], [np.nan] * 3, [np.nan] * 3])
    data = TrainingData(
        ["safe", "a", "b"], labels, np.zeros(3, dtype=np.int64), [], np.array([False, True, True])
    )
    X = np.array([[0.0, 0.0], [0.9, 0.1], [0.2, 0.5]])
    assert infer_categories(data, X, _StubLabeller()) == 2  # type: ignore[arg-type]
    np.testing.assert_array_equal(data.labels[0], [0, 0, 0])
    assert data.labels[1, 0] == 1 and np.isnan(data.labels[1, 1:]).all()
    assert data.labels[2, 2] == 1 and np.isnan(data.labels[2, :2]).all()
    assert not data.needs_category.any()  # type: ignore[union-attr]


def test_fit_refuses_rows_still_waiting_for_a_category() -> None:
    from bastion.models.training import fit_model
    from bastion.policy import load_policy

    data = TrainingData(
        ["a"], np.full((1, 13), np.nan), np.zeros(1, dtype=np.int64), [], np.array([True])
    )
    recipe = Recipe(name="x", sources=[])
    with pytest.raises(ValueError, match="infer_categories first"):
        fit_model(recipe, load_policy("openai"), data, np.zeros((1, 4)), "enc", 4)


@pytest.mark.slow
def test_pseudo_label_keeps_binary_only_violations(datasets_root: Path, tmp_path: Path) -> None:
    from bastion.models.training import assemble
    from bastion.policy import load_policy

    policy = load_policy("openai")
    plain = assemble(
        Recipe.from_file(_recipe(tmp_path, "name: a\nsources: [{dataset: wildguard}]\n")),
        policy,
        datasets_root,
    )
    pseudo = assemble(
        Recipe.from_file(
            _recipe(tmp_path, "name: b\nsources: [{dataset: wildguard, pseudo_label: true}]\n")
        ),
        policy,
        datasets_root,
    )
    assert pseudo.needs_category is not None
    extra = int(pseudo.needs_category.sum())
    assert extra > 100 and len(pseudo.texts) == len(plain.texts) + extra
    assert pseudo.sources[0].positives == 609  # every harmful WildGuard row is kept
