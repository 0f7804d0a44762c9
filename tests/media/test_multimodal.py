"""The Moderator on items with images, video and audio: real OCR, NudeNet, Whisper and hashes.

Media is built by the tests (sentences rendered with Pillow, speech from espeak-ng, videos
assembled with PyAV) and scored with the shipped default model, as `bastion moderate` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import media_factory as mf
import numpy as np
import pytest

from bastion.items import Item
from bastion.media.hashing import pdq_distance
from bastion.media.limits import MediaLimits
from bastion.moderator import Moderator, Verdict

pytestmark = pytest.mark.slow

THREAT = "I will kill you tomorrow"
BENIGN = "The library opens at nine on Saturdays"
THREAT_CATEGORIES = ("violence", "harassment/threatening")


@pytest.fixture(scope="module")
def moderator() -> Iterator[Moderator]:
    with Moderator("openai", media_limits=MediaLimits(**mf.PATIENT_LIMITS)) as m:
        yield m


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    out = {
        "threat_png": mf.save_image(mf.render_text(THREAT, size=48), d / "threat.png"),
        "threat_meme": mf.save_image(
            mf.caption_photo(mf.sample_photo("coffee"), THREAT, size=40), d / "meme.jpg"
        ),
        "benign_png": mf.save_image(mf.render_text(BENIGN, size=48), d / "benign.png"),
        "astronaut": mf.save_image(mf.sample_photo("astronaut"), d / "astronaut.png"),
        "threat_wav": mf.speech_wav(THREAT + ". I know where you live.", d / "threat.wav"),
        "benign_wav": mf.speech_wav(
            "Let us go for a walk in the park this afternoon.", d / "b.wav"
        ),
        "bomb": mf.png_bomb(d / "bomb.png"),
    }
    frames = [mf.sample_photo(n) for n in ("chelsea", "coffee", "camera")]
    out["threat_video"] = mf.make_video(
        d / "threat.mp4", frames, fps=10, seconds_per_frame=1.0, audio=out["threat_wav"]
    )
    out["benign_video"] = mf.make_video(
        d / "benign.mp4", frames, fps=10, seconds_per_frame=1.0, audio=out["benign_wav"]
    )
    return out


def flagged_for_threat(v: Verdict) -> bool:
    return any(v.categories[c] for c in THREAT_CATEGORIES)


def test_rendered_threat_is_flagged_from_the_image(
    moderator: Moderator, media: dict[str, Path]
) -> None:
    v = moderator.moderate_one(Item(images=[media["threat_png"]]))
    assert v.error is None
    assert flagged_for_threat(v), v.category_scores
    top = next(c for c in THREAT_CATEGORIES if v.categories[c])
    assert v.category_applied_input_types[top] == ["image"]
    ocr = [e for e in v.evidence if e.detector == "ocr" and e.category == top]
    assert ocr and "kill" in (ocr[0].text or "").lower()
    assert ocr[0].boxes and ocr[0].source == "images[0]"
    assert [h.kind for h in v.hashes] == ["pdq"] and len(v.hashes[0].hash) == 64


def test_meme_caption_over_a_photo_is_flagged(moderator: Moderator, media: dict[str, Path]) -> None:
    v = moderator.moderate_one(Item(images=[media["threat_meme"]]))
    assert flagged_for_threat(v), v.category_scores


def test_benign_rendered_sentence_and_photo_are_not_flagged(
    moderator: Moderator, media: dict[str, Path]
) -> None:
    benign, photo = moderator.moderate(
        [Item(images=[media["benign_png"]]), Item(images=[media["astronaut"]])]
    )
    assert benign.error is None and not benign.flagged, benign.category_scores
    assert photo.error is None and not photo.flagged, photo.category_scores
    assert photo.category_scores["sexual"] < 0.2  # NudeNet gave its opinion: nothing exposed


def test_without_nudenet_a_photo_goes_to_review_with_sexual_uncovered_not_allowed(
    media: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bastion[nudity]` not installed: the photo's text-free pixels were not looked at for
    nudity, so the verdict says so and sends it to a person instead of scoring it 0 (allow)."""
    import sys

    monkeypatch.setitem(sys.modules, "nudenet", None)  # what `import nudenet` sees uninstalled
    with Moderator("openai", media_limits=MediaLimits(**mf.PATIENT_LIMITS)) as moderator:
        photo, caption = moderator.moderate([Item(images=[media["astronaut"]]), Item(text=BENIGN)])
    assert photo.error is None
    assert set(photo.uncovered) == {"sexual"}
    assert "bastion[nudity]" in photo.uncovered["sexual"]
    assert photo.category_actions["sexual"].value == "review"
    assert photo.action.value != "allow"
    assert not any(e.detector == "nudity" for e in photo.evidence)
    # Text alone never needed NudeNet: nothing is uncovered and it is allowed as before.
    assert caption.uncovered == {} and caption.action.value == "allow"


def test_spoken_threat_is_flagged_with_timestamps(
    moderator: Moderator, media: dict[str, Path]
) -> None:
    threat, benign = moderator.moderate(
        [Item(audio=media["threat_wav"]), Item(audio=media["benign_wav"])]
    )
    assert flagged_for_threat(threat), threat.category_scores
    speech = [e for e in threat.evidence if e.detector == "speech"]
    assert speech and all(e.input_type == "audio" for e in speech)
    assert any("kill" in (e.text or "").lower() for e in speech)
    assert all(e.start_s is not None and e.end_s is not None for e in speech)
    assert not benign.flagged, benign.category_scores


def test_video_of_benign_frames_with_a_spoken_threat_is_flagged(
    moderator: Moderator, media: dict[str, Path]
) -> None:
    threat, benign = moderator.moderate(
        [Item(video=media["threat_video"]), Item(video=media["benign_video"])]
    )
    assert flagged_for_threat(threat), threat.category_scores
    top = next(c for c in THREAT_CATEGORIES if threat.categories[c])
    assert threat.category_applied_input_types[top] == ["video"]
    transcript = [e for e in threat.evidence if e.detector == "speech" and e.category == top]
    assert transcript and "kill" in (transcript[0].text or "").lower()
    assert transcript[0].input_type == "video" and transcript[0].source == "video soundtrack"
    assert {h.kind for h in threat.hashes} == {"vpdq"}
    assert not benign.flagged, benign.category_scores


def test_text_and_image_fuse_to_the_worst_part(
    moderator: Moderator, media: dict[str, Path]
) -> None:
    v = moderator.moderate_one(Item(text="what a lovely afternoon", images=[media["threat_png"]]))
    text_only = moderator.moderate_one("what a lovely afternoon")
    assert flagged_for_threat(v) and not text_only.flagged
    for c, score in v.category_scores.items():
        assert score >= text_only.category_scores[c] - 1e-6


def test_bad_media_fails_only_its_item(moderator: Moderator, media: dict[str, Path]) -> None:
    verdicts = moderator.moderate(
        [
            Item(id="bomb", images=[media["bomb"]]),
            Item(id="text", text=THREAT),
            Item(id="image", images=[media["threat_png"]]),
            Item(id="mixed", text="fine", images=[media["benign_png"], media["bomb"]]),
        ]
    )
    bomb, text, image, mixed = verdicts
    assert bomb.error and "images[0]" in bomb.error and "max_pixels" in bomb.error
    assert not bomb.category_scores
    assert mixed.error and mixed.error.startswith("images[1]")
    assert flagged_for_threat(text) and flagged_for_threat(image)


def test_same_picture_reencoded_gets_a_near_pdq_hash(
    moderator: Moderator, media: dict[str, Path], tmp_path: Path
) -> None:
    photo = mf.sample_photo("astronaut")
    small = mf.save_image(photo[::2, ::2], tmp_path / "small.jpg", quality=70)
    a, b = moderator.moderate([Item(images=[media["astronaut"]]), Item(images=[small])])
    assert pdq_distance(a.hashes[0].hash, b.hashes[0].hash) <= 31


def test_every_kind_of_bad_media_in_one_batch_gets_its_own_error(
    moderator: Moderator, media: dict[str, Path], tmp_path: Path
) -> None:
    bad = {
        "empty": (Item(images=[mf.zero_byte_file(tmp_path / "e.jpg")]), "empty (0 bytes)"),
        "truncated": (Item(images=[mf.truncated_jpeg(tmp_path / "t.jpg")]), "truncated"),
        "bomb": (Item(images=[media["bomb"]]), "max_pixels"),
        "gif": (
            Item(images=[mf.animated_gif(tmp_path / "g.gif", 10_000, size=(8, 8))]),
            "max_image_frames",
        ),
        "text": (Item(images=[mf.text_as_jpg(tmp_path / "x.jpg")]), "not an image format"),
        "no_frames": (
            Item(video=mf.video_without_frames(tmp_path / "n.mp4")),
            "no decodable frames",
        ),
        "long_audio": (Item(audio=mf.long_silent_wav(tmp_path / "l.wav")), "max_audio_seconds"),
    }
    items = [item for item, _ in bad.values()]
    items.insert(3, Item(text=THREAT))
    items.append(Item(images=[media["threat_png"]]))
    verdicts = moderator.moderate(items)
    good_text, good_image = verdicts.pop(3), verdicts.pop()
    for (name, (_, message)), v in zip(bad.items(), verdicts, strict=True):
        assert v.error is not None and message in v.error, (name, v.error)
        assert not v.category_scores and not v.flagged, name
    assert flagged_for_threat(good_text) and flagged_for_threat(good_image)


def chat_screenshot(lines: list[str]) -> np.ndarray:
    """A chat screenshot: grey bubbles with black text, blue ones with white text, alternating."""
    canvas = np.full((90 + 90 * len(lines), 1000, 3), 246, dtype=np.uint8)
    for k, text in enumerate(lines):
        mine = k % 2 == 1
        bubble = mf.render_text(
            text,
            size=26,
            padding=16,
            background=(0, 122, 255) if mine else (229, 229, 234),
            foreground="white" if mine else "black",
        )[:, :760]
        x = 1000 - bubble.shape[1] - 24 if mine else 24
        y = 40 + 90 * k
        canvas[y : y + bubble.shape[0], x : x + bubble.shape[1]] = bubble
    return canvas


def test_one_threat_in_a_chat_screenshot_is_found_in_its_bubble(
    moderator: Moderator, tmp_path: Path
) -> None:
    friendly = [
        "are we still on for the football match on sunday?",
        "yes, bring the snacks and the folding chairs please",
        "great, my brother is coming too, he loves the team",
    ]
    threat = "I know where you live and I will hurt you tomorrow"
    with_threat = [*friendly[:1], threat, *friendly[1:]]  # white text in a blue bubble
    paths = [
        mf.save_image(chat_screenshot(lines), tmp_path / f"chat{n}.png")
        for n, lines in enumerate((with_threat, [*friendly, "see you there then"]))
    ]
    bad, fine = moderator.moderate([Item(images=[p]) for p in paths])
    assert flagged_for_threat(bad), bad.category_scores
    top = next(c for c in THREAT_CATEGORIES if bad.categories[c])
    ocr = [e for e in bad.evidence if e.detector == "ocr" and e.category == top]
    assert ocr and "hurt you" in (ocr[0].text or "") and "football" not in (ocr[0].text or "")
    assert not fine.flagged, fine.category_scores


def test_ocr_over_its_time_limit_fails_only_that_item(media: dict[str, Path]) -> None:
    with Moderator("openai", media_limits=MediaLimits(ocr_timeout_s=0.001)) as strict:
        image, text = strict.moderate([Item(images=[media["threat_png"]]), Item(text=THREAT)])
    assert image.error is not None and "images[0]: text could not be read" in image.error
    assert "took longer" in image.error and not image.category_scores
    assert text.error is None and flagged_for_threat(text)
