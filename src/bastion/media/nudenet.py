"""Nudity regions in images: a batched, vectorised wrapper over NudeNet's YOLOv8 ONNX detector.

NudeNet's own `NudeDetector` runs one image per `session.run` and post-processes every one of
the 2,100 candidate boxes in a Python loop. Here a whole chunk of images goes through one
`session.run` and the candidate filtering is NumPy, so the cost per image is the model's, not
the interpreter's. The pre- and post-processing otherwise follow NudeNet 3.4.2 exactly (pad the
bottom/right to a square, bilinear resize to 320, class-agnostic NMS at IoU 0.45), so scores
and boxes agree with NudeNet's to within float rounding - the tests check that.

One deliberate difference: images here are RGB and the model is fed RGB, which is what an
Ultralytics export expects. NudeNet 3.4.2's `_read_image` swaps the channels twice on a BGR
array (`COLOR_RGBA2BGR`, then `swapRB=True`), so `NudeDetector().detect(bgr)` actually feeds the
model BGR (NudeNet issue #203); `NudeDetector().detect(rgb)` is the call that matches this one.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bastion.cpus import configured_threads
from bastion.errors import ModelError
from bastion.media.decode import check_rgb_image

__all__ = [
    "EXPOSED_LABELS",
    "INSTALL_HINT",
    "LABELS",
    "NudeNet",
    "Region",
    "default_model_path",
    "missing_reason",
]

#: Class names in the model's output order (the same as the ONNX file's `names` metadata).
LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)

#: The labels that make an image sexually explicit; the others (faces, feet, covered parts,
#: a bare male chest or belly) are context, not violations on their own.
EXPOSED_LABELS: frozenset[str] = frozenset(
    {
        "FEMALE_BREAST_EXPOSED",
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)

INPUT_SIZE = 320
#: IoU above which a lower-scoring box is dropped for an overlapping higher one (NudeNet's value).
NMS_IOU = 0.45
#: Images per `session.run`: enough to amortise the call, small enough to bound memory
#: (16 x 3 x 320 x 320 float32 is 19.7 MB in, plus the network's activations).
CHUNK = 16


@dataclass(frozen=True)
class Region:
    """One detected body region. `box` is (x, y, w, h) in the original image's pixels."""

    label: str
    score: float
    box: tuple[int, int, int, int]

    @property
    def exposed(self) -> bool:
        """True when the label is one of `EXPOSED_LABELS`."""
        return self.label in EXPOSED_LABELS


#: How to get the optional `nudenet` package (its wheel's licence files are AGPL-3.0).
INSTALL_HINT = "pip install 'bastion[nudity]' (make install does it)"


def missing_reason() -> str | None:
    """Why NudeNet's weights are not available here, or None when its package is installed.

    `nudenet` is an optional extra (`bastion[nudity]`): Bastion runs without it, and callers
    use this to report the nudity categories as not covered instead of failing or scoring 0.
    """
    try:
        spec = find_spec("nudenet")
    except (ImportError, ValueError):  # a broken or blocked package counts as missing
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return f"NudeNet is not installed (an optional extra: {INSTALL_HINT})"
    return None


def default_model_path() -> Path:
    """`320n.onnx` inside the installed `nudenet` package, found without importing it.

    Importing `nudenet` would build nothing, but it is cheaper and clearer to locate the file
    through the import system: the package is only a carrier for the weights here.
    """
    why = missing_reason()
    if why is not None:
        raise ModelError(f"NudeNet model not found: {why}")
    spec = find_spec("nudenet")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"


class NudeNet:
    """NudeNet's 320 px detector over batches of RGB uint8 images.

    `min_score` is the single confidence cut-off. NudeNet keeps candidates at 0.2 but its
    `cv2.dnn.NMSBoxes(..., 0.25, 0.45)` call then drops everything under 0.25, so 0.25 is what
    it effectively reports; that is the default here, and the two agree box for box. Lower it
    to see weaker detections (which then also take part in NMS).

    `threads` sets ONNX Runtime's intra-op threads (0 = $BASTION_THREADS if set, else its
    default, one per core). The session is thread-safe for `run`, so one instance can serve
    several threads.
    """

    def __init__(
        self, model_path: Path | None = None, *, threads: int = 0, min_score: float = 0.25
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise ModelError(
                f"NudeNet model not found at {path}: reinstall the 'nudenet' package "
                f"({INSTALL_HINT}) or pass model_path= to a 320n.onnx file"
            )
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {min_score}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.model_path = path
        self.min_score = float(min_score)
        self._session = _load_session(path, threads)
        self._input_name: str = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray]) -> list[list[Region]]:
        """Regions per image, highest score first; `[]` for an image with none.

        Every image is checked before any inference, so a bad one fails the call with an
        InputError naming its index rather than after half the batch has run.
        """
        for i, image in enumerate(images):
            check_rgb_image(image, i)
        results: list[list[Region]] = []
        for start in range(0, len(images), CHUNK):
            chunk = images[start : start + CHUNK]
            blob = np.stack([_letterbox(image) for image in chunk])
            # (n, 320, 320, 3) uint8 -> (n, 3, 320, 320) float32 in [0, 1], one vectorised pass.
            batch = np.ascontiguousarray(blob.transpose(0, 3, 1, 2), dtype=np.float32)
            batch *= np.float32(1.0 / 255.0)
            try:
                (output,) = self._session.run(None, {self._input_name: batch})
            except Exception as exc:  # ORT raises its own exception types
                raise ModelError(f"NudeNet inference failed: {exc}") from exc
            for image, raw in zip(chunk, np.asarray(output), strict=True):
                results.append(self._postprocess(raw, image.shape[1], image.shape[0]))
        return results

    def _postprocess(self, raw: np.ndarray, width: int, height: int) -> list[Region]:
        """Candidate filter, box rescale and clip in NumPy; NMS in OpenCV.

        `raw` is (22, N): rows 0-3 are cx, cy, w, h in model pixels, rows 4-21 class scores.
        The arithmetic mirrors NudeNet's (scale by the padded side, clip to the image) so the
        truncated integer boxes come out the same.
        """
        scores_all = raw[4:]
        class_ids = scores_all.argmax(axis=0)
        scores = scores_all[class_ids, np.arange(scores_all.shape[1])]
        keep = scores >= self.min_score
        if not keep.any():
            return []
        cx, cy, w, h = (raw[k, keep].astype(np.float64) for k in range(4))
        scores = scores[keep]
        class_ids = class_ids[keep]
        scale = max(width, height) / INPUT_SIZE
        x = np.clip((cx - w / 2) * scale, 0, width)
        y = np.clip((cy - h / 2) * scale, 0, height)
        w = np.minimum(w * scale, width - x)
        h = np.minimum(h * scale, height - y)
        boxes = np.stack([x, y, w, h], axis=1)
        picked = cv2.dnn.NMSBoxes(
            boxes.tolist(), scores.astype(float).tolist(), self.min_score, NMS_IOU
        )
        order = np.asarray(picked, dtype=np.int64).reshape(-1)
        int_boxes = boxes[order].astype(np.int64)  # truncation toward zero, as NudeNet's int()
        return [
            Region(
                label=LABELS[int(class_ids[i])],
                score=float(scores[i]),
                box=(int(b[0]), int(b[1]), int(b[2]), int(b[3])),
            )
            for i, b in zip(order, int_boxes, strict=True)
        ]


def _load_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session; a corrupt or wrong file becomes a ModelError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or configured_threads() or 0
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # its shape-inference warnings are noise for this model
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        raise ModelError(f"NudeNet model at {path} could not be loaded: {exc}") from exc
    shape = session.get_outputs()[0].shape
    if len(shape) != 3 or shape[1] != 4 + len(LABELS):
        raise ModelError(
            f"{path} is not a NudeNet detector: output shape {shape}, "
            f"expected [batch, {4 + len(LABELS)}, N]"
        )
    return session


def _letterbox(image: np.ndarray) -> np.ndarray:
    """Pad bottom/right with black to a square, then bilinear-resize to 320 x 320 (uint8).

    Padding only on the bottom and right keeps the model's coordinates a plain scale of the
    original's (no offset to subtract); resizing the uint8 image is what NudeNet's
    `cv2.dnn.blobFromImage` does, so the inputs match it bit for bit.
    """
    height, width = image.shape[:2]
    side = max(height, width)
    padded = cv2.copyMakeBorder(
        np.ascontiguousarray(image), 0, side - height, 0, side - width, cv2.BORDER_CONSTANT, value=0
    )
    if side == INPUT_SIZE:
        return padded
    return cv2.resize(padded, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
