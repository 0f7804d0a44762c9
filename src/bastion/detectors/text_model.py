"""The text model a Moderator runs by default: a trained model where one fits the policy, zero-shot otherwise."""

from __future__ import annotations

from pathlib import Path

from bastion.detectors.registry import DetectorSetup
from bastion.detectors.trained import TrainedDetector
from bastion.detectors.zero_shot import ZeroShotDetector
from bastion.errors import ModelError
from bastion.policy import LoadedPolicy

DEFAULT_MODEL = "default"
ZERO_SHOT = "zero-shot"


def shipped_model_dir() -> Path:
    """Where `make model` puts the default model inside the package."""
    return Path(__file__).parents[1] / "data" / "models" / DEFAULT_MODEL


def pick_model(model: str | Path | None, policy: LoadedPolicy, encoder: str | None) -> Path | None:
    """The model directory to load, or None for zero-shot.

    "default" quietly means zero-shot for a policy the shipped model was not trained for (the
    mlcommons pack, a custom policy, the openai pack with examples added): its categories or
    rules differ, and the zero-shot detector reads the policy itself. An explicit directory is
    never swapped for zero-shot: a mismatch there is an error.
    """
    if model is None or str(model) == ZERO_SHOT:
        return None
    if str(model) != DEFAULT_MODEL:
        return Path(model)
    from bastion.models.artifact import read_manifest
    from bastion.models.encoder import DEFAULT_ENCODER

    directory = shipped_model_dir()
    if encoder not in (None, DEFAULT_ENCODER) or not directory.is_dir():
        return None
    manifest = read_manifest(directory)
    return directory if manifest.policy_version == policy.version else None


def pick_runtime(runtime: str | None, model: Path | None, encoder: str | None) -> Path | None:
    """The int8 ONNX encoder directory to serve with, or None for PyTorch.

    A trained model runs on ONNX under "auto" only when its manifest's runtime check passed on
    the very export found (same file hash); zero-shot detection runs on the shipped export of
    the default encoder, whose embedding check is in its export.json.
    """
    from bastion.models.artifact import ONNX_ENCODER_DIR, read_manifest
    from bastion.models.encoder import encoder_runtime, shipped_onnx_encoder
    from bastion.models.onnx_runtime import EncoderExport

    wanted = encoder_runtime(runtime)
    if wanted == "torch":
        return None
    manifest = read_manifest(model) if model is not None else None
    if model is not None and (model / ONNX_ENCODER_DIR).is_dir():
        found: Path | None = model / ONNX_ENCODER_DIR
    else:
        found = shipped_onnx_encoder(manifest.encoder if manifest else encoder, wanted)
    if found is None:
        if wanted == "onnx":
            raise ModelError(
                f"no int8 ONNX export for {'model ' + str(model) if model else 'this encoder'}; "
                "export one with `bastion model export-encoder`, or use runtime 'torch'"
            )
        return None
    if wanted == "auto" and manifest is not None:
        check = manifest.runtime_check
        if check is None or not check.within_tolerance:
            return None
        if check.encoder_sha256 != EncoderExport.read(found).sha256:
            return None
    return found


_ZERO_SHOT_CACHE: dict[tuple[str, str | None, str | None], ZeroShotDetector] = {}


def fitted_zero_shot(
    policy: LoadedPolicy,
    encoder: str | None,
    model: Path | None = None,
    onnx_dir: Path | None = None,
) -> ZeroShotDetector:
    """Fitted zero-shot detector, memoised by policy version (which includes its content hash)
    and runtime.

    A model with a fine-tuned encoder brings its own: the zero-shot detector it blends with
    must embed with the same weights. The encoder keeps an LRU of embeddings by text hash.
    """
    from bastion.models.artifact import FINETUNED_ENCODER
    from bastion.models.encoder import Encoder, TextEncoder, load_encoder
    from bastion.models.onnx_runtime import LruEmbeddings, OnnxTextEncoder

    tuned = model if model is not None and (model / FINETUNED_ENCODER).is_dir() else None
    key = (
        policy.version,
        str(tuned.resolve()) if tuned is not None else encoder,
        str(onnx_dir) if onnx_dir is not None else None,
    )
    if key not in _ZERO_SHOT_CACHE:
        if len(_ZERO_SHOT_CACHE) >= 8:
            _ZERO_SHOT_CACHE.pop(next(iter(_ZERO_SHOT_CACHE)))
        enc: Encoder
        if onnx_dir is not None:
            enc = OnnxTextEncoder(onnx_dir)
        elif tuned is not None:
            from bastion.models.artifact import read_manifest
            from bastion.models.finetune import load_fine_tuned

            weights = load_fine_tuned(tuned / FINETUNED_ENCODER, encoder)
            enc = TextEncoder.from_model(weights, read_manifest(tuned).encoder)
        else:
            enc = load_encoder(encoder)
        _ZERO_SHOT_CACHE[key] = ZeroShotDetector(LruEmbeddings(enc)).fit(policy)
    return _ZERO_SHOT_CACHE[key]


def model_detector(setup: DetectorSetup) -> TrainedDetector | ZeroShotDetector:
    """The detector registered as "model": what `setup.model` names, on the runtime it picks."""
    chosen = pick_model(setup.model, setup.policy, setup.encoder)
    onnx_dir = pick_runtime(setup.runtime, chosen, setup.encoder)
    zero_shot = fitted_zero_shot(setup.policy, setup.encoder, chosen, onnx_dir)
    if chosen is None:
        return zero_shot
    return TrainedDetector.load(chosen, setup.policy, zero_shot, onnx=onnx_dir is not None)


def zero_shot_detector(setup: DetectorSetup) -> ZeroShotDetector:
    """The detector registered as "zero-shot": the policy's own text as its model."""
    onnx_dir = pick_runtime(setup.runtime, None, setup.encoder)
    return fitted_zero_shot(setup.policy, setup.encoder, None, onnx_dir)


def model_thresholds(
    model: str | Path | None, policy: LoadedPolicy, encoder: str | None
) -> dict[str, float]:
    """The flag thresholds calibrated with the trained model `model` picks; none for zero-shot."""
    from bastion.models.artifact import read_manifest

    chosen = pick_model(model, policy, encoder)
    return dict(read_manifest(chosen).thresholds) if chosen is not None else {}
