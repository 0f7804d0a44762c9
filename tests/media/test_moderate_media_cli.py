"""`bastion moderate --image/--video/--audio` and media fields in the JSONL contract."""

from __future__ import annotations

import json
from pathlib import Path

import media_factory as mf
import pytest
from typer.testing import CliRunner

from bastion.cli import app
from bastion.errors import InputError
from threat_texts import INSULTS, LOOKALIKES, THREATS

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(autouse=True)
def patient_limits(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The OCR and decoding limits of a busy machine, through the environment `moderate` reads."""
    limits = mf.patient_limits_file(tmp_path_factory.mktemp("limits"))
    monkeypatch.setenv("BASTION_MEDIA_LIMITS", str(limits))


def moderate_json(*args: str) -> dict[str, object]:
    result = runner.invoke(app, ["moderate", *args, "--json"])
    assert result.exit_code == 0, result.output
    verdict: dict[str, object] = json.loads(result.stdout)
    return verdict


def test_image_of_a_rendered_threat_is_flagged(tmp_path: Path) -> None:
    path = mf.save_image(mf.render_text("I will kill you tomorrow", size=44), tmp_path / "t.png")
    verdict = moderate_json("--image", str(path))
    categories = verdict["categories"]
    assert isinstance(categories, dict)
    assert categories["violence"] or categories["harassment/threatening"], verdict
    applied = verdict["category_applied_input_types"]
    assert isinstance(applied, dict) and "image" in applied["harassment/threatening"]


@pytest.mark.parametrize("which", ["benign", "astronaut"])
def test_benign_sentence_and_astronaut_are_not_flagged(tmp_path: Path, which: str) -> None:
    image = (
        mf.render_text("See you at the bakery on Sunday morning", size=44)
        if which == "benign"
        else mf.sample_photo("astronaut")
    )
    path = mf.save_image(image, tmp_path / f"{which}.png")
    verdict = moderate_json("--image", str(path))
    assert verdict["flagged"] is False, verdict["category_scores"]
    assert verdict["error"] is None


def test_table_output_and_a_refused_image_exit_non_zero(tmp_path: Path) -> None:
    bomb = mf.png_bomb(tmp_path / "bomb.png")
    result = runner.invoke(app, ["moderate", "--image", str(bomb), "caption"])
    assert result.exit_code == 1
    assert "max_pixels" in result.output and "not scored" in result.output


@pytest.mark.parametrize("text", [THREATS[0], INSULTS[0]])
def test_a_spoken_threat_or_insult_is_flagged_and_a_spoken_look_alike_is_not(
    tmp_path: Path, text: str
) -> None:
    """The acceptance sentences of issue 10, spoken with espeak-ng and moderated through
    Whisper's transcript; the look-alike shows the flag is not for speech itself."""
    verdict = moderate_json("--audio", str(mf.speech_wav(text, tmp_path / "s.wav")))
    assert verdict["flagged"] is True, verdict["category_scores"]
    applied = verdict["category_applied_input_types"]
    assert isinstance(applied, dict) and any("audio" in v for v in applied.values())
    safe = moderate_json("--audio", str(mf.speech_wav(LOOKALIKES[0], tmp_path / "l.wav")))
    assert safe["flagged"] is False, safe["category_scores"]


def test_jsonl_lines_may_carry_media_without_text(tmp_path: Path) -> None:
    mf.save_image(mf.render_text("I will kill you tomorrow", size=44), tmp_path / "t.png")
    mf.speech_wav("I will kill you tomorrow", tmp_path / "s.wav")
    mf.zero_byte_file(tmp_path / "empty.jpg")
    lines = [
        {"id": "img", "images": ["t.png"]},
        {"id": "speech", "audio": "s.wav"},
        {"id": "empty", "images": ["empty.jpg"], "text": "hello"},
        {"id": "text", "text": "see you at lunch"},
    ]
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["moderate", "--input", str(src), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in map(json.loads, out.read_text("utf-8").splitlines())}
    assert rows["img"]["flagged"] is True and rows["img"]["hashes"][0]["kind"] == "pdq"
    assert rows["speech"]["flagged"] is True
    assert "audio" in rows["speech"]["category_applied_input_types"]["harassment/threatening"]
    assert rows["empty"]["flagged"] is None and "empty (0 bytes)" in rows["empty"]["error"]
    assert rows["empty"]["action"] == "review"
    assert rows["text"]["flagged"] is False and rows["text"]["error"] is None


def test_media_limits_file_is_applied_and_checked(tmp_path: Path) -> None:
    path = mf.save_image(mf.sample_photo("coffee"), tmp_path / "coffee.png")
    limits = tmp_path / "limits.yaml"
    limits.write_text("max_pixels: 1000\n", encoding="utf-8")
    result = runner.invoke(app, ["moderate", "--image", str(path), "--media-limits", str(limits)])
    assert result.exit_code == 1 and "max_pixels=1,000" in result.output
    limits.write_text("max_pixel: 1000\n", encoding="utf-8")
    result = runner.invoke(app, ["moderate", "--image", str(path), "--media-limits", str(limits)])
    assert isinstance(result.exception, InputError)
    assert "max_pixel: Extra inputs are not permitted" in str(result.exception)


def test_media_limits_come_from_the_environment_as_serve_takes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = mf.save_image(mf.sample_photo("coffee"), tmp_path / "coffee.png")
    limits = tmp_path / "limits.yaml"
    limits.write_text("max_pixels: 1000\n", encoding="utf-8")
    monkeypatch.setenv("BASTION_MEDIA_LIMITS", str(limits))
    result = runner.invoke(app, ["moderate", "--image", str(path)])
    assert result.exit_code == 1 and "max_pixels=1,000" in result.output
    monkeypatch.setenv("BASTION_MEDIA_LIMITS", str(tmp_path / "missing.yaml"))
    # wide enough that the error box does not break the path across lines
    result = runner.invoke(app, ["moderate", "--image", str(path)], env={"COLUMNS": "500"})
    assert result.exit_code == 2 and "missing.yaml" in result.output
