"""A recipe run end to end: data, fine-tuning (checkpointed), fitting, ONNX export and its check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bastion.errors import ModelError
from bastion.eval.metrics import binary_metrics
from bastion.models.artifact import (
    FINETUNED_ENCODER,
    HEAD_ONNX,
    ONNX_ENCODER_DIR,
    ModelArtifact,
    RuntimeCheck,
    write_manifest,
)
from bastion.models.heads import MultiLabelHead
from bastion.models.scoring import any_category
from bastion.policy import LoadedPolicy
from bastion.training.data import (
    TrainingData,
    assemble,
    hard_safe_texts,
    source_weights,
    split,
    training_split,
)
from bastion.training.fit import fit_head, fit_model, fit_tuned, hard_safe_metrics, zero_shot_probs
from bastion.training.recipe import Recipe, recipe_policy

if TYPE_CHECKING:
    from bastion.models.classifier_tuning import TuningHistory
    from bastion.models.encoder import TextEncoder


CHECKPOINT_DIR = "checkpoint"  # sub-directory of a model being trained: fine-tuning checkpoints


def _counting(
    progress: Callable[[str, int, int], None] | None, stage: str, total: int
) -> Callable[[int], None]:
    """A callback that adds up the rows an encoder reports and shows `stage` done of `total`."""
    done = [0]

    def count(n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(stage, done[0], total)

    return count


def train(
    recipe: Recipe,
    out_dir: Path | str,
    data_root: Path | str | None = None,
    cache_path: Path | str | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ModelArtifact:
    """Run a recipe end to end and save the model; returns the artifact."""
    from bastion.models.embedding_cache import EmbeddingCache
    from bastion.models.encoder import load_encoder

    policy = recipe_policy(recipe)
    data = assemble(recipe, policy, data_root)
    encoder = load_encoder(recipe.encoder)
    # A head trained with its encoder needs only the calibration rows embedded again.
    total = (
        len(training_split(recipe, policy, data)[2])
        if recipe.classifier_finetune is not None
        else len(data.texts)
    )
    step = _counting(progress, "encoding", total)

    def cached(texts: list[str], count: Callable[[int], None]) -> np.ndarray:
        cache = EmbeddingCache(cache_path or _default_cache(), encoder)
        try:
            return cache.encode(texts, progress=count)
        finally:
            cache.close()

    if recipe.classifier_finetune is not None:
        base_embeddings = None
        if recipe.classifier_finetune.head_init == "linear_probe":
            base_embeddings = cached(
                data.texts,
                _counting(
                    progress, "encoding (frozen encoder, for the head's start)", len(data.texts)
                ),
            )
        encoder, head, history = tune_classifier(
            recipe, policy, data, encoder.name, Path(out_dir) / CHECKPOINT_DIR, progress,
            base_embeddings,
        )  # fmt: skip
        save_tuned_encoder(encoder, Path(out_dir), history)
        artifact, X, zero_shot = fit_tuned(recipe, policy, data, encoder, head, progress=step)
    else:
        if recipe.encoder_finetune is not None:
            encoder = _fine_tuned_encoder(recipe, data, encoder.name, Path(out_dir), progress)
            X = encoder.encode(data.texts, progress=step)  # new weights: nothing cached applies
        else:
            # A fine-tuned encoder left from an earlier run in this directory would be loaded
            # with a head that was not trained on it.
            shutil.rmtree(Path(out_dir) / FINETUNED_ENCODER, ignore_errors=True)
            X = cached(data.texts, step)
        zero_shot = zero_shot_probs(policy, encoder, X)
        artifact = fit_model(recipe, policy, data, X, zero_shot, encoder.name, encoder.dim)
    if progress is not None:
        progress("training", 1, 1)
    artifact.save(out_dir)
    onnx_dir = _onnx_encoder(recipe, encoder, Path(out_dir), progress)
    if onnx_dir is not None:
        if progress is not None:
            progress("checking the int8 ONNX path", 0, 1)
        _, _, cal = training_split(recipe, policy, data)
        artifact.manifest.runtime_check = runtime_check(
            artifact, policy, data, cal, artifact.predict_proba(X[cal], zero_shot[cal]), onnx_dir,
            Path(out_dir) / HEAD_ONNX,
        )  # fmt: skip
        write_manifest(artifact.manifest, out_dir)
    hard = hard_safe_texts(recipe, data_root)
    if hard:
        artifact.manifest.metrics.update(hard_safe_metrics(artifact, policy, encoder, hard))
        write_manifest(artifact.manifest, out_dir)
    shutil.rmtree(Path(out_dir) / CHECKPOINT_DIR, ignore_errors=True)  # the model is whole now
    return artifact


def _onnx_encoder(
    recipe: Recipe,
    encoder: TextEncoder,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None,
) -> Path | None:
    """The int8 ONNX export of the encoder the model was trained on: the shipped one for the
    default encoder, a fresh export into the model directory for a fine-tuned one; None for a
    custom encoder that cannot be exported (it is then served with PyTorch)."""
    from bastion.models.encoder import shipped_onnx_encoder
    from bastion.models.onnx_export import export_encoder

    target = out_dir / ONNX_ENCODER_DIR
    if not recipe.tunes_encoder:
        shutil.rmtree(target, ignore_errors=True)
        return shipped_onnx_encoder(recipe.encoder)
    if progress is not None:
        progress("exporting the encoder to ONNX", 0, 1)
    try:
        # A shipped model's graph is stored xz-compressed (unpacked into the cache on first use).
        export_encoder(encoder, target, compress=recipe.ship)
    except ModelError:
        return None
    return target


def runtime_check(
    artifact: ModelArtifact,
    policy: LoadedPolicy,
    data: TrainingData,
    rows: np.ndarray,
    torch_scores: np.ndarray,
    onnx_dir: Path,
    head_onnx: Path,
) -> RuntimeCheck:
    """Score `rows` again through the int8 ONNX encoder and the ONNX head; compare with the
    PyTorch path's calibrated scores on the same rows."""
    from bastion.models.onnx_runtime import OnnxHead, OnnxTextEncoder

    onnx_encoder = OnnxTextEncoder(onnx_dir)
    texts = [data.texts[i] for i in rows]
    X = onnx_encoder.encode(texts)
    zero_shot = zero_shot_probs(policy, onnx_encoder, X) if artifact.zero_shot_share.any() else None
    onnx_scores = ModelArtifact(
        artifact.manifest, OnnxHead(head_onnx), artifact.calibrator
    ).predict_proba(X, zero_shot)
    binary = data.binary()[rows]
    thresholds = np.array([artifact.manifest.thresholds[c] for c in artifact.manifest.categories])
    flags_torch = (torch_scores >= thresholds).any(axis=1)
    flags_onnx = (onnx_scores >= thresholds).any(axis=1)
    return RuntimeCheck(
        encoder_sha256=onnx_encoder.export.sha256,
        rows=len(rows),
        max_abs_diff=float(np.abs(torch_scores - onnx_scores).max()) if len(rows) else 0.0,
        flag_agreement=float(np.mean(flags_torch == flags_onnx)) if len(rows) else 1.0,
        binary_auprc_torch=binary_metrics(binary, any_category(torch_scores), 0.5).auprc,
        binary_auprc_onnx=binary_metrics(binary, any_category(onnx_scores), 0.5).auprc,
    )


def _fine_tuned_encoder(
    recipe: Recipe,
    data: TrainingData,
    base_name: str,
    out_dir: Path,
    progress: Callable[[str, int, int], None] | None,
) -> TextEncoder:
    """Fine-tune on the training split only (calibration rows stay unseen) and save the layers."""
    from bastion.models.encoder import TextEncoder
    from bastion.models.finetune import fine_tune, save_top_layers

    config = recipe.encoder_finetune
    assert config is not None
    tr, _, _ = split(data, recipe.split, recipe.seed)
    model = fine_tune(
        [data.texts[i] for i in tr],
        data.labels[tr],
        config=config,
        sample_weight=source_weights(data.source)[tr],
        base=recipe.encoder,
        progress=None if progress is None else (lambda d, t: progress("fine-tuning", d, t)),
    )
    save_top_layers(model, out_dir / FINETUNED_ENCODER, config.layers)
    return TextEncoder.from_model(model, f"{base_name}+finetuned:{recipe.name}")


def tune_classifier(
    recipe: Recipe,
    policy: LoadedPolicy,
    data: TrainingData,
    base_name: str,
    checkpoint_dir: Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    base_embeddings: np.ndarray | None = None,
) -> tuple[TextEncoder, MultiLabelHead, TuningHistory]:
    """Fine-tune every layer with the head on the training split (checkpointed in
    `checkpoint_dir`, so an interrupted run resumes); the held-out curve is measured on part of
    the early-stopping split. Returns the encoder, the head and the learning curve.

    With `head_init: linear_probe` the head starts as the recipe's head fitted on the frozen
    encoder's embeddings of the rows (`base_embeddings`, or embedded here)."""
    from bastion.models.classifier_tuning import fine_tune_classifier
    from bastion.models.encoder import TextEncoder, load_encoder

    config = recipe.classifier_finetune
    assert config is not None
    init_head = None
    if config.head_init == "linear_probe":
        if base_embeddings is None:
            base_embeddings = load_encoder(recipe.encoder).encode(data.texts)
        init_head = fit_head(recipe, policy, data, base_embeddings)
    tr, stop, _ = training_split(recipe, policy, data)
    held = np.random.default_rng(recipe.seed).permutation(stop)[: config.eval_rows]
    model, head, history = fine_tune_classifier(
        [data.texts[i] for i in tr],
        data.labels[tr],
        data.source[tr],
        config=config,
        at_least_one=data.at_least_one[tr],
        source_weights=np.array([s.weight for s in data.sources]),
        validation=([data.texts[i] for i in held], data.labels[held], data.at_least_one[held]),
        base=recipe.encoder,
        checkpoint_dir=checkpoint_dir,
        progress=None if progress is None else (lambda d, t: progress("fine-tuning", d, t)),
        init_head=init_head,
    )
    encoder = TextEncoder.from_model(model, f"{base_name}+finetuned:{recipe.name}")
    return encoder, head, history


def save_tuned_encoder(encoder: TextEncoder, out_dir: Path, history: TuningHistory) -> None:
    """Every transformer layer of a tuned encoder (float16) and its learning curve, under
    `out_dir/encoder`."""
    from bastion.models.finetune import _encoder_layers, save_top_layers

    model = encoder._model
    save_top_layers(model, out_dir / FINETUNED_ENCODER, len(_encoder_layers(model)), delta=True)
    (out_dir / FINETUNED_ENCODER / "history.json").write_text(
        json.dumps(history.__dict__, indent=1) + "\n", "utf-8"
    )


def _default_cache() -> Path:
    import os

    home = Path(os.environ.get("BASTION_HOME", "bastion-data"))
    return home / "cache" / "embeddings.sqlite"
