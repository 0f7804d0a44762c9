"""Training from a recipe: sources in, a model that moderates out, licences enforced."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.errors import BastionError
from bastion.models.artifact import ModelArtifact
from bastion.moderator import Moderator
from bastion.policy import load_policy, parse_policy
from bastion.training.data import TrainingData, source_weights, split
from bastion.training.pipeline import train
from bastion.training.recipe import Recipe


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
    examples = [c.examples for c in load_policy("openai").policy.categories]
    positives = sum(len(e.positive) for e in examples)
    assert m.sources[0].rows == positives + sum(len(e.negative) for e in examples)
    assert m.sources[0].positives == positives
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
    # The int8 ONNX path was checked on the held-out rows, and is used only if it passed.
    check = m.runtime_check
    assert check is not None and (tmp_path / "m" / "head.onnx").exists()
    assert check.rows == int(m.metrics["val_rows"] or 0)  # no held-out rows here: not verified
    assert 0.0 <= check.max_abs_diff < 0.5 and 0.5 < check.flag_agreement <= 1.0
    assert threat.model_version.endswith("@onnx-int8") == check.within_tolerance
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
    # A fallback category's score is the zero-shot score through the model's calibration map:
    # the head plays no part in it.
    text = "I can't go on, tonight I'm going to end my life"
    v = Moderator("openai", model=tmp_path / "m").moderate_one(text)
    zero = Moderator("openai", model="zero-shot").moderate_one(text)
    ids = list(zero.category_scores)
    raw = np.array([[zero.category_scores[c] for c in ids]])
    expected = art.calibrator.transform(raw)[0, ids.index("self-harm/intent")]
    assert v.category_scores["self-harm/intent"] == pytest.approx(expected, abs=1e-5)


def test_safe_text_files_are_negatives_for_every_category(tmp_path: Path) -> None:
    from bastion.policy import load_policy
    from bastion.training.data import assemble

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
    from bastion.policy import load_policy
    from bastion.training.data import assemble

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


def test_calibration_role_sends_a_source_to_calibration_whole() -> None:
    from bastion.models.artifact import TrainingSource

    sources = [
        TrainingSource(name="a", licence="x", use="ship-ok", rows=80, positives=0),
        TrainingSource(
            name="b", licence="x", use="ship-ok", rows=20, positives=0, role="calibration"
        ),
    ]
    data = TrainingData(["t"] * 100, np.zeros((100, 1)), np.array([0] * 80 + [1] * 20), sources)
    tr, stop, cal = split(data, (0.25, 0.25), seed=0)
    assert set(np.flatnonzero(data.source == 1)) <= set(cal)
    assert (data.source[tr] == 1).sum() == (data.source[stop] == 1).sum() == 0
    assert (data.source[cal] == 0).sum() == 20


def test_max_safe_flagged_caps_the_held_out_safe_source() -> None:
    """A safe source held out for calibration that looks violating forces thresholds up until at
    most the cap of it is flagged; without the cap the per-category target alone flags more."""
    from bastion.models.artifact import TrainingSource
    from bastion.policy import load_policy
    from bastion.training.fit import fit_model

    policy = load_policy("openai")
    n_cat = len(policy.category_ids)
    rng = np.random.default_rng(0)
    dim = 8
    proto = rng.normal(size=dim)

    def rows(n: int, shift: float) -> np.ndarray:
        return np.asarray(shift * proto + rng.normal(size=(n, dim)), dtype=np.float32)

    X = np.vstack([rows(400, 1.5), rows(400, -1.5), rows(60, 1.5)])
    Y = np.full((860, n_cat), np.nan)
    Y[:400, 0], Y[400:, :] = 1.0, 0.0
    source = np.array([0] * 800 + [1] * 60)
    sources = [
        TrainingSource(name="main", licence="x", use="ship-ok", rows=800, positives=400),
        TrainingSource(name="hard", licence="x", use="ship-ok", rows=60, positives=0, role="calibration"),
    ]  # fmt: skip
    data = TrainingData([f"t{i}" for i in range(860)], Y, source, sources)

    def flagged_share(cap: float | None) -> float:
        recipe = Recipe(
            name="x", sources=[], min_positives=1, head={"epochs": 60, "lr": 0.02}, zero_shot_weight=0,
            threshold={"kind": "fpr", "value": 0.3, "max_safe_flagged": cap},
        )  # fmt: skip
        zero_shot = np.full((len(X), n_cat), 0.5)
        art = fit_model(recipe, policy, data, X, zero_shot, "enc", dim)
        th = np.array([art.manifest.thresholds[c] for c in policy.category_ids])
        s = art.predict_proba(X[800:], zero_shot[800:])
        return float((s >= th).any(axis=1).mean())

    assert flagged_share(None) > 0.2
    assert flagged_share(0.05) <= 0.05


def test_unnamed_violations_are_kept_as_at_least_one(datasets_root: Path, tmp_path: Path) -> None:
    from bastion.policy import load_policy
    from bastion.training.data import assemble

    policy = load_policy("openai")
    plain = assemble(
        Recipe.from_file(_recipe(tmp_path, "name: a\nsources: [{dataset: wildguard}]\n")),
        policy,
        datasets_root,
    )
    body = "name: b\nsources: [{dataset: wildguard, unnamed_violations: at_least_one}]\n"
    kept = assemble(Recipe.from_file(_recipe(tmp_path, body)), policy, datasets_root)
    extra = int(kept.at_least_one.sum())
    assert extra > 100 and len(kept.texts) == len(plain.texts) + extra
    assert kept.sources[0].positives == 609  # every harmful WildGuard row is kept
    # Their labels stay unknown (never negative), and they count as violating in the binary view.
    assert np.isnan(kept.labels[kept.at_least_one]).all()
    assert (kept.binary()[kept.at_least_one] == 1).all()


@pytest.mark.slow
def test_a_recipe_can_fine_tune_the_encoder(tmp_path: Path) -> None:
    """The model directory carries the fine-tuned top layers; loading it embeds with them (the
    zero-shot part too); retraining without fine-tuning removes them."""
    from bastion.models.encoder import load_encoder

    body = (
        "name: tuned\npolicy: openai\nsources: [{policy_examples: true}]\n"
        "head: {epochs: 30}\nmin_positives: 5\n"
        "encoder_finetune: {layers: 1, pairs: 32, batch_size: 8, lr: 0.0001}\n"
    )
    art = train(
        Recipe.from_file(_recipe(tmp_path, body)), tmp_path / "m", cache_path=tmp_path / "c"
    )
    assert art.manifest.encoder == "all-MiniLM-L6-v2+finetuned:tuned"
    assert (tmp_path / "m" / "encoder" / "encoder_top.safetensors").exists()
    mod = Moderator("openai", model=tmp_path / "m")
    assert "finetuned:tuned" in mod.model_version
    det = mod.detectors[0]
    text = ["a sentence to embed"]
    tuned = det.encoder.encode(text)  # type: ignore[attr-defined]
    base = load_encoder(None).encode(text)
    assert float(tuned[0] @ base[0]) < 0.99999
    # Its own int8 export, made from the tuned weights, was checked against them.
    export = json.loads((tmp_path / "m" / "encoder-int8" / "export.json").read_text())
    assert export["encoder"] == art.manifest.encoder and export["check"]["min_cosine"] > 0.9
    assert art.manifest.runtime_check is not None
    plain = "name: tuned\npolicy: openai\nsources: [{policy_examples: true}]\nhead: {epochs: 5}\n"
    train(Recipe.from_file(_recipe(tmp_path, plain)), tmp_path / "m", cache_path=tmp_path / "c")
    assert not (tmp_path / "m" / "encoder").exists()
    assert not (tmp_path / "m" / "encoder-int8").exists()


STARTER = Path(__file__).resolve().parents[2] / "src" / "bastion" / "policy" / "starter.yaml"
THREAT = "harassment/threatening"


def _export(tmp_path: Path, n: int = 30, every: int = 5) -> Path:
    """An annotation export in the format `classification_rows` writes: every `every`-th item a
    threat (the full path), the others safe, some ending at the first step, some at the second,
    and a few annotated without a path or for no category of this policy."""
    rows = []
    for i in range(n):
        if i % every == 0:
            text = f"I know the bus you take, number {i}; you will not get off it in one piece"
            path = {"target": "yes", "harm": "yes", "serious": "yes"}
        elif i % 2:
            text, path = f"What a lovely day at beach number {i}", {"target": "no"}
        else:
            text = f"I could kill for coffee number {i} right now"
            path = {"target": "yes", "harm": "yes", "serious": "no"}
        violates = int(i % every == 0)
        row = {"id": f"item-{i}", "text": text, "label": violates, THREAT: violates}
        row["path"] = {THREAT: path}
        rows.append(row)
    rows[1]["path"] = {}  # annotated without a path
    rows.append({"id": "other", "text": "spam spam", "label": 0, "spam": 0, "path": {}})
    out = tmp_path / "export.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def test_a_file_source_reads_an_export_with_its_paths(tmp_path: Path) -> None:
    from bastion.training.data import assemble
    from bastion.training.recipe import recipe_policy

    _export(tmp_path)
    (tmp_path / "policy.yaml").write_text(STARTER.read_text())
    body = (
        "name: x\npolicy: policy.yaml\nhead: {hidden: 8, step_targets: true}\n"
        "sources: [{file: export.jsonl, licence: our annotations, use: ship-ok}]\n"
    )
    recipe = Recipe.from_file(_recipe(tmp_path, body))
    policy = recipe_policy(recipe)  # the policy file beside the recipe
    assert policy.category_ids == [THREAT]
    data = assemble(recipe, policy)
    # The row that names no category of this policy says nothing: dropped.
    assert len(data.texts) == 30 and "spam spam" not in data.texts
    assert data.labels[:, 0].tolist() == [float(i % 5 == 0) for i in range(30)]
    assert data.sources[0].name == "export.jsonl" and data.sources[0].positives == 6
    assert [c.name for c in data.step_columns] == [
        f"{THREAT}:{s}" for s in ("target", "harm", "serious")
    ]
    assert data.steps[0].tolist() == [0, 0, 0]  # yes, yes, yes
    assert data.steps[1].tolist() == [-1, -1, -1]  # no path recorded
    assert data.steps[3].tolist() == [1, -1, -1]  # "no" at the first step: the rest unreached
    assert data.steps[2].tolist() == [0, 0, 1]
    sub = data.subset(np.array([0, 3]))
    assert sub.steps.tolist() == [[0, 0, 0], [1, -1, -1]] and sub.step_columns == data.step_columns


def test_a_file_source_masks_categories_it_does_not_give(tmp_path: Path) -> None:
    from bastion.training.data import assemble

    rows = [
        {"text": "a", "label": 1, "violence/graphic": 1, "path": {}},
        {"text": "b", "label": 0, "hate": 0, "path": {}},
        {"text": "c", "label": 0, "hate": 0, "violence/graphic": 0},
    ]
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    body = "name: x\nsources: [{file: f.jsonl, licence: ours, use: dev-only}]\n"
    policy = load_policy("openai")
    data = assemble(Recipe.from_file(_recipe(tmp_path, body)), policy)
    ids = policy.category_ids
    hate, graphic = ids.index("hate"), ids.index("violence/graphic")
    assert data.labels[0, graphic] == 1 and np.isnan(data.labels[0, hate])
    assert data.labels[1, hate] == 0 and np.isnan(data.labels[1, graphic])
    assert data.labels[2, [hate, graphic]].tolist() == [0, 0]
    others = [j for j in range(len(ids)) if j not in (hate, graphic)]
    assert np.isnan(data.labels[:, others]).all()  # never "safe" for what nobody annotated
    assert data.steps.shape == (3, 0)  # no step targets asked for


def test_a_file_source_needs_terms_policy_columns_and_paths_for_steps(tmp_path: Path) -> None:
    from bastion.training.data import assemble

    policy = load_policy("openai")
    (tmp_path / "f.jsonl").write_text('{"text": "a", "label": 1, "toxic": 1}\n')
    (tmp_path / "g.jsonl").write_text('{"text": "a", "label": 0, "hate": 0}\n')

    def recipe(body: str) -> Recipe:
        return Recipe.from_file(_recipe(tmp_path, "name: x\n" + body))

    with pytest.raises(BastionError, match=r"f\.jsonl: give its `licence` and `use`"):
        assemble(recipe("sources: [{file: f.jsonl}]\n"), policy)
    dev = "ship: true\nsources: [{file: g.jsonl, licence: NC, use: dev-only}]\n"
    with pytest.raises(BastionError, match=r"ships its model, but g\.jsonl is dev-only"):
        assemble(recipe(dev), policy)
    with pytest.raises(BastionError, match=r"no column is a category .*columns are: text, label"):
        assemble(recipe("sources: [{file: f.jsonl, licence: x, use: ship-ok}]\n"), policy)
    (tmp_path / "h.jsonl").write_text(json.dumps({"text": "a", "label": 0, THREAT: 0}) + "\n")
    no_paths = (
        "head: {hidden: 8, step_targets: true}\n"
        "sources: [{file: h.jsonl, licence: x, use: ship-ok}]\n"
    )
    with pytest.raises(BastionError, match="no source gives a decision-step answer"):
        assemble(recipe(no_paths), load_policy(STARTER))
    plain = parse_policy(
        f"id: plain\nversion: 1.0.0\nname: P\ncategories:\n  - {{id: {THREAT}, name: T, "
        "severity: 2, definition: threats}\n"
    )
    with pytest.raises(BastionError, match="policy 'plain' has no decision steps"):
        assemble(recipe(no_paths), plain)
    with pytest.raises(BastionError, match="step_targets needs a hidden layer"):
        recipe("head: {step_targets: true}\nsources: [{file: g.jsonl}]\n")


@pytest.mark.slow
@pytest.mark.parametrize("steps", [False, True])
def test_train_on_a_small_export_then_moderate(tmp_path: Path, steps: bool) -> None:
    """30 annotated items, 6 violating (fewer than min_positives): the model trains, the category
    falls back to zero-shot, and the saved model loads and moderates; with step targets the
    steps were learned and the saved model has the same form."""
    from safetensors.numpy import load_file

    export = _export(tmp_path)
    head = "head: {hidden: 16, step_targets: true}\n" if steps else ""
    body = f"name: round\npolicy: {STARTER}\n{head}sources: [{{file: {export.name}, licence: ours, use: dev-only}}]\n"
    result = CliRunner().invoke(
        app, ["train", "--recipe", str(_recipe(tmp_path, body)), "--out", str(tmp_path / "m")],
        env={"BASTION_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    m = ModelArtifact.load(tmp_path / "m").manifest
    assert m.categories == [THREAT] and m.zero_shot_fallback == [THREAT]
    assert m.sources[0].rows == 30 and m.sources[0].positives == 6
    weights = load_file(str(tmp_path / "m" / "head.safetensors"))
    assert set(weights) == (
        {"1.weight", "1.bias", "4.weight", "4.bias"} if steps else {"1.weight", "1.bias"}
    )
    # One output (the category): the step outputs were not saved.
    assert weights["4.weight" if steps else "1.weight"].shape[0] == 1
    step_metrics = [k for k in m.metrics if k.startswith("val_step_accuracy/")]
    assert len(step_metrics) == (3 if steps else 0)
    if steps:
        assert "decision steps learned alongside" in result.output
    verdicts = Moderator(load_policy(STARTER), model=tmp_path / "m").moderate(
        ["I know the bus you take; you will not get off it in one piece", "What a lovely day"]
    )
    assert verdicts[0].category_scores[THREAT] > verdicts[1].category_scores[THREAT]


@pytest.mark.slow
def test_train_encoder_option_replaces_the_recipes_encoder(tmp_path: Path) -> None:
    """`--encoder` trains on another encoder than the recipe names (how `make model-quality`
    builds the default recipe on all-mpnet-base-v2); the manifest names it."""
    from bastion.models.encoder import default_encoder_path

    mine = tmp_path / "my-encoder"
    mine.symlink_to(default_encoder_path(), target_is_directory=True)
    export = _export(tmp_path)
    body = f"name: round\npolicy: {STARTER}\nsources: [{{file: {export.name}, licence: ours, use: dev-only}}]\n"
    env = {"BASTION_HOME": str(tmp_path / "home")}
    recipe = str(_recipe(tmp_path, body))
    result = CliRunner().invoke(
        app, ["train", "--recipe", recipe, "--encoder", str(mine), "--out", str(tmp_path / "m")],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ModelArtifact.load(tmp_path / "m").manifest.encoder == "my-encoder"
    refused = CliRunner().invoke(
        app, ["train", "--recipe", recipe, "--encoder", "org/a-hub-model", "--out", str(tmp_path / "n")],
        env=env,
    )  # fmt: skip
    assert refused.exit_code != 0 and "never downloads models" in str(refused.exception)
    assert not (tmp_path / "n" / "manifest.json").exists()
