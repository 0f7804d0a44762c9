"""Tesseract OCR: reads rendered text in several fonts, sizes and backgrounds, meme captions included.

Every test image is rendered here with Pillow, so the expected words and where they were
drawn are known exactly; the scikit-image photos stand in for "a picture with no text".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data

from bastion.errors import BastionError, DecodeTimeoutError, InputError, MediaError, ModelError
from bastion.media.ocr import OcrResult, OcrTimeoutError, OcrWord, Tesseract, _group, _parse_tsv

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = [
    name
    for name in (
        "DejaVuSans.ttf",
        "DejaVuSans-Bold.ttf",
        "DejaVuSerif.ttf",
        "DejaVuSerif-Italic.ttf",
    )
    if (FONT_DIR / name).is_file()
] + ["default"]
SENTENCE = "I will kill you tomorrow at noon"
Box = tuple[int, int, int, int]


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if name == "default":
        return ImageFont.load_default(size=size)
    return ImageFont.truetype(str(FONT_DIR / name), size)


def _render(
    font_name: str,
    size: int,
    fg: tuple[int, int, int],
    bg: tuple[int, int, int] | np.ndarray,
) -> tuple[np.ndarray, Box]:
    """The sentence on a plain colour or a given background; returns it and the text's box."""
    font = _font(font_name, size)
    if isinstance(bg, np.ndarray):
        image = Image.fromarray(bg)
    else:
        width = int(font.getlength(SENTENCE)) + 2 * size
        image = Image.new("RGB", (width, int(size * 2.5)), bg)
    draw = ImageDraw.Draw(image)
    origin = (size, (image.height - size) // 2)
    draw.text(origin, SENTENCE, fill=fg, font=font)
    x0, y0, x1, y1 = (int(v) for v in draw.textbbox(origin, SENTENCE, font=font))
    return np.asarray(image), (x0, y0, x1 - x0, y1 - y0)


def _inside(inner: Box, outer: Box, margin: float) -> bool:
    return (
        inner[0] >= outer[0] - margin
        and inner[1] >= outer[1] - margin
        and inner[0] + inner[2] <= outer[0] + outer[2] + margin
        and inner[1] + inner[3] <= outer[1] + outer[3] + margin
    )


def _word(result: OcrResult, key: str) -> OcrWord:
    matches = [w for w in result.words if key in w.text.lower()]
    assert matches, f"no word containing {key!r} in {result.text!r}"
    return matches[0]


def _check_boxes(result: OcrResult, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    for line in result.lines:
        assert line.words
        assert line.text == " ".join(w.text for w in line.words)
        for box in [line.box, *(w.box for w in line.words)]:
            x, y, w, h = box
            assert x >= 0 and y >= 0 and w >= 0 and h >= 0
            assert x + w <= width and y + h <= height
        for word in line.words:
            assert _inside(word.box, line.box, 0)
    assert result.text == "\n".join(line.text for line in result.lines)


@pytest.fixture(scope="module")
def ocr() -> Tesseract:
    return Tesseract()


@pytest.mark.parametrize("font_name", FONTS)
@pytest.mark.parametrize("size", [18, 32, 56])
@pytest.mark.parametrize("polarity", ["dark_on_light", "light_on_dark"])
def test_reads_rendered_sentence(ocr: Tesseract, font_name: str, size: int, polarity: str) -> None:
    fg, bg = (
        ((0, 0, 0), (255, 255, 255)) if polarity == "dark_on_light" else ((255,) * 3, (20, 20, 40))
    )
    image, drawn = _render(font_name, size, fg, bg)
    result = ocr.read(image)
    text = result.text.lower()
    assert "kill" in text and "tomorrow" in text, result.text
    _check_boxes(result, image)
    # Each word lies on the drawn sentence, and "kill" sits where it was drawn along the line.
    for word in result.words:
        assert _inside(word.box, drawn, margin=size * 0.3), (word, drawn)
    font = _font(font_name, size)
    start = drawn[0] + font.getlength("I will ")
    end = drawn[0] + font.getlength("I will kill")
    kill = _word(result, "kill")
    assert abs((kill.box[0] + kill.box[2] / 2) - (start + end) / 2) < size * 0.5


@pytest.mark.parametrize("noise", [10, 25, 35])
def test_reads_text_on_a_noisy_gradient(ocr: Tesseract, noise: int) -> None:
    """Global Otsu (Tesseract's default) reads nothing here at noise >= 20; Sauvola reads it all."""
    rng = np.random.default_rng(noise)
    ramp = np.linspace(120, 255, 1000)[None, :, None].repeat(120, axis=0).repeat(3, axis=2)
    background = np.clip(ramp + rng.normal(0, noise, ramp.shape), 0, 255).astype(np.uint8)
    image, drawn = _render("DejaVuSans.ttf", 32, (0, 0, 0), background)
    result = ocr.read(image)
    text = result.text.lower()
    assert "kill" in text and "tomorrow" in text, result.text
    _check_boxes(result, image)
    assert _inside(_word(result, "tomorrow").box, drawn, margin=10)


def _meme(photo: np.ndarray, top: str, bottom: str) -> tuple[np.ndarray, dict[str, Box]]:
    """White bold caption with a black outline at the top and bottom, sized to fit the width."""
    image = Image.fromarray(photo)
    draw = ImageDraw.Draw(image)
    boxes: dict[str, Box] = {}
    for text, at_top in ((top, True), (bottom, False)):
        size = 80
        while _font("DejaVuSans-Bold.ttf", size).getlength(text) > image.width * 0.92:
            size -= 2
        font = _font("DejaVuSans-Bold.ttf", size)
        x = (image.width - font.getlength(text)) / 2
        y = 10 if at_top else image.height - size - 20
        draw.text(
            (x, y), text, font=font, fill="white", stroke_width=size // 14, stroke_fill="black"
        )
        x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font, stroke_width=size // 14)
        boxes[text] = (int(x0), int(y0), int(x1 - x0), int(y1 - y0))
    return np.asarray(image), boxes


def test_reads_meme_caption_over_a_photo(ocr: Tesseract) -> None:
    """Plain Tesseract reads nothing useful here; the caption-mask pass reads every word."""
    image, boxes = _meme(data.astronaut(), "KILL THEM ALL", "SEE YOU TOMORROW")
    result = ocr.read(image)
    text = result.text.lower()
    assert "kill" in text and "tomorrow" in text, result.text
    _check_boxes(result, image)
    assert _inside(_word(result, "kill").box, boxes["KILL THEM ALL"], margin=4)
    assert _inside(_word(result, "tomorrow").box, boxes["SEE YOU TOMORROW"], margin=4)


@pytest.mark.parametrize(
    "photo",
    [data.chelsea, data.coffee, data.astronaut, lambda: np.stack([data.camera()] * 3, axis=-1)],
    ids=["chelsea", "coffee", "astronaut", "camera"],
)
def test_photo_without_text_gives_almost_nothing(ocr: Tesseract, photo: object) -> None:
    result = ocr.read(photo())  # type: ignore[operator]
    assert len(result.words) <= 2, result.text


@pytest.mark.slow
def test_read_many_equals_read_one_by_one(ocr: Tesseract) -> None:
    images = [
        _render("DejaVuSans.ttf", 32, (0, 0, 0), (255, 255, 255))[0],
        _render("DejaVuSerif.ttf", 18, (255, 255, 255), (20, 20, 40))[0],
        data.chelsea(),
        _meme(data.astronaut(), "KILL THEM ALL", "SEE YOU TOMORROW")[0],
        _render("default", 56, (200, 30, 30), (240, 230, 140))[0],
    ]
    many = Tesseract(workers=2).read_many(images)
    assert many == [ocr.read(image) for image in images]
    assert ocr.read_many([]) == []


def test_tiny_and_odd_images(ocr: Tesseract) -> None:
    rng = np.random.default_rng(0)
    for shape in [(7, 300, 3), (300, 7, 3), (1, 1, 3)]:
        result = ocr.read(rng.integers(0, 256, shape, dtype=np.uint8))
        _check_boxes(result, np.zeros(shape, np.uint8))
    strip = _render("DejaVuSans.ttf", 12, (0, 0, 0), (255, 255, 255))[0]  # upscaled 4x
    assert "tomorrow" in ocr.read(strip).text.lower()


def test_timeout_kills_tesseract_and_raises() -> None:
    image, _ = _render("DejaVuSans.ttf", 56, (0, 0, 0), (255, 255, 255))
    big = np.ascontiguousarray(np.tile(image, (20, 2, 1)))
    with pytest.raises(OcrTimeoutError, match="longer than") as caught:
        Tesseract(timeout_s=0.001).read(big)
    assert isinstance(caught.value, DecodeTimeoutError)
    assert isinstance(caught.value, MediaError)
    assert caught.value.limit == "ocr_timeout_s"


def test_missing_binary_raises_model_error() -> None:
    with pytest.raises(ModelError, match="tesseract not found"):
        Tesseract("definitely-not-a-tesseract-binary")


def test_missing_language_raises_model_error() -> None:
    with pytest.raises(ModelError, match="tesseract-ocr-xyz"):
        Tesseract(lang="xyz")


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 3), np.float64),
        np.zeros((0, 5, 3), np.uint8),
    ],
)
def test_bad_images_raise_input_error(ocr: Tesseract, bad: np.ndarray) -> None:
    with pytest.raises(InputError, match="image 1"):
        ocr.read_many([np.zeros((5, 5, 3), np.uint8), bad])
    assert issubclass(InputError, BastionError)


def test_tsv_parsing_confidence_pipe_fix_and_upscale_mapping() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t800\t400\t-1\t",
        "5\t1\t1\t1\t1\t1\t20\t40\t10\t40\t91.5\t|",
        "5\t1\t1\t1\t1\t2\t40\t40\t80\t40\t96.0\twill",
        "5\t1\t1\t1\t1\t3\t130\t40\t60\t40\t12.0\tx#",
        "5\t1\t1\t1\t2\t1\t20\t120\t100\t40\t95.0\tkill",
        "5\t1\t2\t1\t1\t1\t700\t0\t4\t400\t88.0\t|",
        "5\t1\t2\t1\t1\t2\t700\t0\t4\t400\t88.0\t ",
    ]
    words = _parse_tsv(
        "\n".join([header, *rows]), scale=2.0, width=400, height=200, min_confidence=40
    )
    result = _group(words)
    assert [line.text for line in result.lines] == ["I will", "kill"]  # low-conf word dropped
    assert result.text == "I will\nkill"
    assert result.lines[0].words[0] == OcrWord("I", 91.5, (10, 20, 5, 20))  # "|" -> "I", halved
    assert result.lines[0].box == (10, 20, 50, 20)
    assert result.lines[1].box == (10, 60, 50, 20)
