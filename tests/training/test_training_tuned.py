"""Training with the whole encoder fine-tuned as the classifier; texts repeated across sources
are trained on once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import BastionError
from bastion.policy import load_policy
from bastion.training.data import assemble
from bastion.training.pipeline import train
from bastion.training.recipe import Recipe

STARTER = Path(__file__).resolve().parents[2] / "src" / "bastion" / "policy" / "starter.yaml"
THREAT = "harassment/threatening"  # the starter policy's only category


def _recipe(tmp_path: Path, body: str) -> Recipe:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: tuned\npolicy: {STARTER}\n" + body, "utf-8")
    return Recipe.from_file(path)


def _jsonl(path: Path, rows: list[tuple[str, int]]) -> None:
    path.write_text(
        "".join(json.dumps({"text": t, "label": y, THREAT: y}) + "\n" for t, y in rows), "utf-8"
    )


# ----------------------------------------------------------------------------- repeated texts


def _two_sources(tmp_path: Path) -> tuple[str, str]:
    (tmp_path / "safe.txt").write_text("Kill the stuck process\nhello world\n", "utf-8")
    _jsonl(
        tmp_path / "ours.jsonl",
        [
            ("kill the STUCK process!", 1),  # the same words as a safe text
            ("I will hurt you", 1),
            ("  Hello,   world.", 0),  # the same words again
            ("kill the stuck process 2", 0),  # one more word: another text
        ],
    )
    safe = "{safe_texts: safe.txt, licence: ours, use: ship-ok}"
    ours = "{file: ours.jsonl, licence: ours, use: ship-ok}"
    return safe, ours


def test_a_text_repeated_in_a_later_source_is_dropped_there(tmp_path: Path) -> None:
    safe, ours = _two_sources(tmp_path)
    data = assemble(_recipe(tmp_path, f"sources: [{safe}, {ours}]\n"), load_policy(STARTER))
    assert data.texts == [
        "Kill the stuck process",
        "hello world",
        "I will hurt you",
        "kill the stuck process 2",
    ]
    assert data.labels[:, 0].tolist() == [0, 0, 1, 0]  # the first source's label is kept
    assert data.source.tolist() == [0, 0, 1, 1]
    first, second = data.sources
    assert (first.rows, first.duplicates, first.positives) == (2, 0, 0)
    # Rows and positives count what is left: the repeated positive is not one of them.
    assert (second.rows, second.duplicates, second.positives) == (2, 2, 1)
    assert len(data.at_least_one) == len(data.steps) == 4


def test_the_first_source_wins(tmp_path: Path) -> None:
    safe, ours = _two_sources(tmp_path)
    data = assemble(_recipe(tmp_path, f"sources: [{ours}, {safe}]\n"), load_policy(STARTER))
    assert data.texts == [
        "kill the STUCK process!",
        "I will hurt you",
        "  Hello,   world.",
        "kill the stuck process 2",
    ]
    assert data.labels[:, 0].tolist() == [1, 1, 0, 0]
    first = data.sources[0]
    assert (first.name, first.rows, first.duplicates, first.positives) == ("ours.jsonl", 4, 0, 2)


def test_texts_without_words_are_not_all_one_text(tmp_path: Path) -> None:
    (tmp_path / "safe.txt").write_text("👍\nsee you soon\n", "utf-8")
    _jsonl(tmp_path / "ours.jsonl", [("🖕", 1), ("I will hurt you", 1), ("see you soon!", 0)])
    body = (
        "sources:\n  - {safe_texts: safe.txt, licence: ours, use: ship-ok}\n"
        "  - {file: ours.jsonl, licence: ours, use: ship-ok}\n"
    )
    data = assemble(_recipe(tmp_path, body), load_policy(STARTER))
    assert data.texts == ["👍", "see you soon", "🖕", "I will hurt you"]
    assert data.sources[1].duplicates == 1


def test_a_source_repeated_whole_is_still_reported(tmp_path: Path) -> None:
    safe, ours = _two_sources(tmp_path)
    (tmp_path / "again.txt").write_text("HELLO world\nI will hurt you!\n", "utf-8")
    again = "{safe_texts: again.txt, licence: ours, use: ship-ok}"
    data = assemble(
        _recipe(tmp_path, f"sources: [{safe}, {ours}, {again}]\n"), load_policy(STARTER)
    )
    assert len(data.texts) == 4
    assert [(s.name, s.rows, s.duplicates) for s in data.sources] == [
        ("safe.txt", 2, 0),
        ("ours.jsonl", 2, 2),
        ("again.txt", 0, 2),
    ]


# ----------------------------------------------------------------------------- recipes


def test_a_recipe_tunes_the_encoder_one_way_only(tmp_path: Path) -> None:
    body = (
        "sources: [{policy_examples: true}]\n"
        "encoder_finetune: {layers: 1}\nclassifier_finetune: {steps: 10}\n"
    )
    with pytest.raises(BastionError, match="invalid recipe") as error:
        _recipe(tmp_path, body)
    assert "encoder_finetune" in str(error.value) and "classifier_finetune" in str(error.value)
    tuned = _recipe(tmp_path, "sources: [{policy_examples: true}]\nclassifier_finetune: {}\n")
    assert tuned.tunes_encoder and tuned.classifier_finetune is not None
    assert tuned.classifier_finetune.steps == 2000


def test_classifier_finetune_settings_are_checked(tmp_path: Path) -> None:
    body = "sources: [{policy_examples: true}]\nclassifier_finetune: {stepz: 10}\n"
    with pytest.raises(BastionError, match=r"classifier_finetune\.stepz"):
        _recipe(tmp_path, body)
    body = "sources: [{policy_examples: true}]\nclassifier_finetune: {batch_size: 1}\n"
    with pytest.raises(BastionError, match=r"classifier_finetune\.batch_size"):
        _recipe(tmp_path, body)


# ----------------------------------------------------------------------------- end to end

THREATS = [
    "I will hurt you badly",
    "I am going to stab you",
    "I will break your arms",
    "you will not survive tomorrow",
    "I will burn your house",
    "I am coming to beat you",
]
CALM = [
    "lovely weather at the beach",
    "the soup needs more salt",
    "our train was on time",
    "she plays the cello well",
    "the garden is full of roses",
    "we bought a new lamp",
]


@pytest.mark.slow
def test_train_with_the_classifier_fine_tuned_resumes_then_moderates(tmp_path: Path) -> None:
    """An interrupted run resumes from its checkpoint in the model directory; the finished model
    carries every trained layer and their int8 export, no checkpoint, and loads and moderates."""
    from bastion.models.artifact import ModelArtifact
    from bastion.models.encoder import load_encoder
    from bastion.moderator import Moderator

    rows = [(f"{t} {i}", 1) for i in range(2) for t in THREATS]
    rows += [(f"{t} {i}", 0) for i in range(2) for t in CALM]
    _jsonl(tmp_path / "ours.jsonl", rows)
    recipe = _recipe(
        tmp_path,
        "sources: [{file: ours.jsonl, licence: ours, use: dev-only}]\n"
        "min_positives: 2\nzero_shot_weight: 0\n"
        "classifier_finetune: {steps: 12, batch_size: 8, max_length: 16, head_lr: 0.05, "
        "lr: 0.0001, checkpoint_every: 4, eval_rows: 8}\n",
    )
    out = tmp_path / "m"
    tuning: list[int] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "fine-tuning":
            tuning.append(done)

    def stop_at_step_6(stage: str, done: int, total: int) -> None:
        progress(stage, done, total)
        if stage == "fine-tuning" and done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(recipe, out, cache_path=tmp_path / "c.sqlite", progress=stop_at_step_6)
    assert tuning == [1, 2, 3, 4, 5, 6]
    assert (out / "checkpoint" / "finetune-checkpoint.pt").is_file()
    tuning.clear()
    art = train(recipe, out, cache_path=tmp_path / "c.sqlite", progress=progress)
    assert tuning == list(range(5, 13))  # steps 5 and 6 again, after the checkpoint at 4

    assert not (out / "checkpoint").exists()
    assert (out / "encoder" / "encoder_top.safetensors").is_file()
    meta = json.loads((out / "encoder" / "encoder_top.json").read_text("utf-8"))
    assert meta["layers"] == 6  # every layer was trained, so every layer is saved
    history = json.loads((out / "encoder" / "history.json").read_text("utf-8"))
    assert history["resumed_from"] == 4
    assert (out / "encoder-int8").is_dir()
    manifest = ModelArtifact.load(out).manifest
    assert manifest.encoder == art.manifest.encoder
    assert manifest.encoder.endswith("+finetuned:tuned")
    assert manifest.sources[0].rows == 24 and manifest.sources[0].positives == 12
    assert manifest.zero_shot_fallback == []
    assert manifest.runtime_check is not None

    mod = Moderator(load_policy(STARTER), model=out)
    assert "finetuned:tuned" in mod.model_version
    threat, calm = mod.moderate(["I will hurt you badly 0", "lovely weather at the beach 0"])
    assert threat.category_scores[THREAT] > calm.category_scores[THREAT]
    # It embeds with the trained weights, not the base encoder's.
    text = ["a sentence to embed"]
    tuned = mod.detectors[0].encoder.encode(text)  # type: ignore[attr-defined]
    assert float(tuned[0] @ load_encoder(None).encode(text)[0]) < 0.9999
