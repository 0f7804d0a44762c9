"""Text in images: Tesseract run as a subprocess per image, with the preprocessing that makes it read memes.

Why a subprocess and not a binding: Tesseract is a C++ program that parses whatever it is
handed; running it as a child process with a wall-clock timeout means a pathological image
costs at most `timeout_s` and can never take the service down with it. The image goes in as an
in-memory PNG on stdin (nothing touches disk) and TSV comes back on stdout.

What the preprocessing is for, each measured on rendered text (see tests/test_ocr.py):

* Grayscale, and upscale small images so the short side is at least ~300 px: Tesseract's LSTM
  reads text under ~20 px badly, and a 1000 x 40 banner is common in screenshots.
* Sauvola local thresholding (`-c thresholding_method=2`) instead of Tesseract's default global
  Otsu: on a noisy or gradient background Otsu turns the page into speckle and Tesseract returns
  nothing at all, Sauvola reads it perfectly, and clean text reads the same either way.
* Dark images (mean under 128) are read inverted first, then as they are if that pass was not
  confident: Tesseract 5 does invert light-on-dark lines itself, but less well ("1 will" for
  "I will", a 56 px serif line half lost, 12 px text not found at all).
* A "caption" pass for meme-style text, white letters with a dark outline over a photo, when
  the image has such letters: Tesseract sees the photo, not the letters, and reads
  nothing useful. The caption mask keeps only bright connected regions almost wholly ringed by
  dark pixels, i.e. outlined letters, drawn black on white; it is built only when the image is
  not mostly bright (a white page cannot hold a caption of that kind) and such letter-shaped
  regions exist. Of the passes run, the one whose words score higher is kept.
* Passes stop at the first confident one, so clean text (light or dark) costs one run; a
  screenshot mixing light and dark text, or a photo with a caption, costs one or two more.
* Screenshots mix polarities (white text in blue chat bubbles under black text on grey): the
  regions of light text (found by which extreme sits further from a local median) are read
  again made dark-on-light, and the sure words that the first read did not cover are added.
* A lone "|" is almost always a capital I at the start of a line (it is what Tesseract reads
  "I will..." as), so it is rewritten, as is a line-initial "1" before a lower-case word; a
  line that is nothing but "|" is a rule and dropped.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from bastion.errors import DecodeTimeoutError, ModelError
from bastion.media.decode import check_rgb_image

__all__ = ["OcrLine", "OcrResult", "OcrTimeoutError", "OcrWord", "Tesseract"]

#: Short side the image is upscaled to when smaller (text under ~20 px is read badly).
MIN_SHORT_SIDE = 300
#: Sides shorter than this (after upscaling) are padded to it.
MIN_SIDE = 64
#: Upscaling factor cap, so a 4 px sliver does not become a huge image of blur.
MAX_UPSCALE = 4.0
#: Long-side cap after upscaling: more pixels cost time and add nothing for Tesseract.
MAX_LONG_SIDE = 4000
#: Gray mean under which the image is also read inverted (light text on a dark background).
DARK_MEAN = 128
#: Median window (pixels, before upscaling) that sees past a letter's strokes to its background.
MEDIAN_WINDOW = 21
#: How much further (grey levels) the brightest pixels must sit from the background than the
#: darkest for a region to count as light text.
LIGHT_TEXT_MARGIN = 24
#: Share of the image in light-text regions for it to count as mixed (a screenshot), not
#: wholly one kind or specks of it.
MIXED_SHARE = (0.02, 0.9)
MERGED_BLOCK_OFFSET = 10_000
#: Word confidence counted as "sure" when deciding to skip the remaining passes.
CONFIDENT = 85.0
#: Caption mask: a "bright" pixel (white letter fill) and a "dark" one (its outline).
BRIGHT = 180
DARK = 90
#: Fraction of a bright region's outer boundary that must be dark for it to count as a letter.
OUTLINE_FRACTION = 0.5
#: Fewer outlined letter-shaped regions than this and the caption pass is not worth a run.
MIN_CAPTION_GLYPHS = 3

_ALNUM = re.compile(r"[^\W_]", re.UNICODE)


class OcrTimeoutError(DecodeTimeoutError):
    """Tesseract ran past `timeout_s` on one image and was killed.

    A DecodeTimeoutError (so a MediaError): callers that already count and report media that
    is too slow to process handle OCR the same way; `limit` is "ocr_timeout_s".
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.limit = "ocr_timeout_s"


@dataclass(frozen=True)
class OcrWord:
    """One recognised word; `box` is (x, y, w, h) in the original image's pixels, `confidence` 0-100."""

    text: str
    confidence: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True)
class OcrLine:
    """Words Tesseract put on one line (same block, paragraph and line), in reading order."""

    text: str
    box: tuple[int, int, int, int]
    words: list[OcrWord]
    block: int = 0  # Tesseract's block: a paragraph, caption or chat bubble


@dataclass(frozen=True)
class OcrResult:
    """All lines of one image; `text` is the lines joined with newlines ("" when none)."""

    text: str
    lines: list[OcrLine]

    @property
    def words(self) -> list[OcrWord]:
        return [word for line in self.lines for word in line.words]

    def blocks(self) -> list[list[OcrLine]]:
        """Lines grouped by Tesseract block (paragraphs, captions, chat bubbles), in order."""
        grouped: dict[int, list[OcrLine]] = {}
        for line in self.lines:
            grouped.setdefault(line.block, []).append(line)
        return list(grouped.values())


class Tesseract:
    """Tesseract OCR over batches of RGB uint8 images, `workers` processes at a time.

    `psm` 3 (automatic page segmentation) is the default: on the test renderings it reads
    everything psm 11 (sparse text) reads, and on photos without text it returns nothing where
    psm 11 returns confident-looking garbage. `min_confidence` (0-100) drops words below it.
    `timeout_s` is per image, across all its passes (usually one, at most three).
    Each process gets OMP_THREAD_LIMIT=1 so `workers` processes use `workers` cores, not
    `workers` x cores fighting each other.
    """

    def __init__(
        self,
        binary: str = "tesseract",
        *,
        lang: str = "eng",
        psm: int = 3,
        timeout_s: float = 10.0,
        min_confidence: float = 40.0,
        workers: int = 2,
    ) -> None:
        path = shutil.which(binary)
        if path is None:
            raise ModelError(
                f"tesseract not found ({binary!r}): install Debian's tesseract-ocr "
                "(make install does it)"
            )
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not 0 <= psm <= 13:
            raise ValueError(f"psm must be 0-13, got {psm}")
        self.binary = path
        self.lang = lang
        self.psm = psm
        self.timeout_s = float(timeout_s)
        self.min_confidence = float(min_confidence)
        self.workers = workers
        self._env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        self._check_languages()

    def _check_languages(self) -> None:
        """Fail at construction, not on the first image, when the language data is missing."""
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, binary resolved by shutil.which
                [self.binary, "--list-langs"],
                capture_output=True,
                timeout=30,
                env=self._env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(f"tesseract at {self.binary} could not be run: {exc}") from exc
        listed = done.stdout.decode("utf-8", "replace").splitlines()[1:]
        installed = {name.strip() for name in listed}
        missing = [name for name in self.lang.split("+") if name not in installed]
        if done.returncode != 0 or missing:
            raise ModelError(
                f"tesseract at {self.binary} has no language data for {', '.join(missing) or self.lang}"
                f" (installed: {', '.join(sorted(installed)) or 'none'}): install "
                + " ".join(f"tesseract-ocr-{name}" for name in missing or [self.lang])
            )

    def read(self, image: np.ndarray) -> OcrResult:
        """Text in one image (see `read_many`)."""
        return self.read_many([image])[0]

    def read_many(self, images: Sequence[np.ndarray]) -> list[OcrResult]:
        """One OcrResult per image, in order, up to `workers` Tesseract processes at once.

        Every image is checked first, so a bad one fails the call before any work. The first
        failure in input order (an OcrTimeoutError, say) is raised after the images not yet
        started are cancelled; a caller that wants to skip failures calls `read` per image.
        """
        for i, image in enumerate(images):
            check_rgb_image(image, i)
        if len(images) <= 1 or self.workers == 1:
            return [self._read_one(image) for image in images]
        with ThreadPoolExecutor(max_workers=min(self.workers, len(images))) as pool:
            futures: list[Future[OcrResult]] = [pool.submit(self._read_one, im) for im in images]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _read_one(self, image: np.ndarray) -> OcrResult:
        deadline = time.monotonic() + self.timeout_s  # one budget for all passes of an image
        gray, scale = _prepare(image)
        height, width = image.shape[:2]
        # Dark images are read inverted first: light text reads better as dark on light than
        # through Tesseract's own per-line inversion ("1 will" for "I will", dropped words).
        passes = [255 - gray, gray] if float(gray.mean()) < DARK_MEAN else [gray]
        best: list[tuple[tuple[int, int, int], OcrWord]] = []
        for i, prepared in enumerate(passes):
            words = self._run(prepared, scale, width, height, deadline)
            if i == 0 or _score(words) > _score(best):
                best = words
            if _confident(best):
                break
        # Outlined captions over a photo: read whenever the image has them, because a read of
        # the photo itself can look confident and still be garbage ("Meet eafte sc oo,la").
        # A caption read replaces the first only if it reads more, so clean text is unharmed.
        for caption in _caption_masks(image):
            words = self._run(_rescale(caption, scale), scale, width, height, deadline)
            if _score(words) > _score(best):
                best = words
            if _confident(words):
                break
        # A screenshot mixes polarities (white text in blue chat bubbles under black text on
        # white) and one global pass misses one kind: read the regions of the other kind made
        # dark-on-light, and add the words that the first read did not already cover.
        regions = _light_text_regions(gray, scale)
        if regions is not None:
            flip = regions if float(gray.mean()) >= DARK_MEAN else ~regions
            mixed = np.where(flip, 255 - gray, gray).astype(np.uint8)
            extra = self._run(mixed, scale, width, height, deadline)
            best = _merge(best, extra)
        return _group(best)

    def _run(
        self, gray: np.ndarray, scale: float, width: int, height: int, deadline: float
    ) -> list[tuple[tuple[int, int, int], OcrWord]]:
        """One Tesseract process on one prepared image; words keyed by (block, par, line)."""
        timeout = deadline - time.monotonic()
        if timeout <= 0:
            raise self._timeout(width, height)
        # Bottom/right padding keeps box coordinates as they are; Tesseract's Sauvola window
        # fails outright ("whsize must be >= 2") on an image only a few pixels across.
        pad_y, pad_x = max(0, MIN_SIDE - gray.shape[0]), max(0, MIN_SIDE - gray.shape[1])
        if pad_y or pad_x:
            gray = cv2.copyMakeBorder(gray, 0, pad_y, 0, pad_x, cv2.BORDER_REPLICATE)
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="PNG", compress_level=1)
        command = [
            self.binary,
            "stdin",
            "stdout",
            "--psm",
            str(self.psm),
            "-l",
            self.lang,
            "-c",
            "thresholding_method=2",
            "tsv",
        ]
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, binary resolved by shutil.which
                command,
                input=buffer.getvalue(),
                capture_output=True,
                timeout=timeout,
                env=self._env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:  # subprocess.run has already killed it
            raise self._timeout(width, height) from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
            raise ModelError(
                f"tesseract exited with status {done.returncode} (lang={self.lang!r}): "
                + " / ".join(detail)
            )
        return _parse_tsv(
            done.stdout.decode("utf-8", "replace"), scale, width, height, self.min_confidence
        )

    def _timeout(self, width: int, height: int) -> OcrTimeoutError:
        return OcrTimeoutError(
            f"OCR of a {width}x{height} image took longer than {self.timeout_s:g} s "
            "and tesseract was stopped"
        )


def _upscale_factor(height: int, width: int) -> float:
    short, long = min(height, width), max(height, width)
    scale = min(max(1.0, MIN_SHORT_SIDE / short), MAX_UPSCALE)
    return max(1.0, min(scale, MAX_LONG_SIDE / long))


def _prepare(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Grayscale, upscaled (bicubic) when small; returns it and the factor applied."""
    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    scale = _upscale_factor(*gray.shape)
    return _rescale(gray, scale), scale


def _light_text_regions(gray: np.ndarray, scale: float) -> np.ndarray | None:
    """Where text is lighter than its background, when the image mixes both kinds; else None.

    Within a window wider than a letter's strokes the median is the background (text is the
    minority of pixels there), and text is whichever extreme sits further from it: the
    brightest pixels for white text in a chat bubble or a dark title bar, the darkest for ink
    on paper. The decision is smoothed over the same window so that a region flips as a whole.
    """
    window = min(255, round(MEDIAN_WINDOW * max(1.0, scale)) | 1)
    kernel = np.ones((window, window), np.uint8)
    background = cv2.medianBlur(gray, window).astype(np.int16)
    above = cv2.dilate(gray, kernel).astype(np.int16) - background
    below = background - cv2.erode(gray, kernel).astype(np.int16)
    light = (above > below + LIGHT_TEXT_MARGIN).astype(np.float32)
    regions = cv2.blur(light, (window, window)) > 0.5
    share = float(regions.mean())
    return regions if MIXED_SHARE[0] <= share <= MIXED_SHARE[1] else None


def _merge(
    first: list[tuple[tuple[int, int, int], OcrWord]],
    extra: list[tuple[tuple[int, int, int], OcrWord]],
) -> list[tuple[tuple[int, int, int], OcrWord]]:
    """`first` plus the sure words of `extra` that overlap none of them (lines kept apart).

    Only confident words with a letter or digit are added: the seams of the region mask give
    Tesseract stray strokes to misread as "\\" or "|" at low confidence.
    """
    taken = np.array([w.box for _, w in first], dtype=np.int64).reshape(-1, 4)
    out = list(first)
    for (block, par, line), word in extra:
        if word.confidence < CONFIDENT or not _ALNUM.search(word.text):
            continue
        x, y, w, h = word.box
        if len(taken):
            overlap_x = np.minimum(taken[:, 0] + taken[:, 2], x + w) > np.maximum(taken[:, 0], x)
            overlap_y = np.minimum(taken[:, 1] + taken[:, 3], y + h) > np.maximum(taken[:, 1], y)
            if (overlap_x & overlap_y).any():
                continue
        out.append(((block + MERGED_BLOCK_OFFSET, par, line), word))
    return out


def _rescale(gray: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return gray
    size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
    return cv2.resize(gray, size, interpolation=cv2.INTER_CUBIC)


def _caption_masks(image: np.ndarray) -> list[np.ndarray]:
    """Outlined bright letters (meme captions) drawn black on white: none, or one per ring width.

    Connected components of bright pixels are labelled once; each component's outer boundary is
    scored by how much of it is dark. Letter fills with an outline score high, sky, walls and
    white shirts near 0. The boundary is measured one pixel out (thick outlines) and two pixels
    out (thin antialiased outlines, grey next to the fill); each gives its own mask and the
    caller keeps the better read. Letter-sized only: a component taller than a third of the
    image is background, however dark its edge. All NumPy/OpenCV.
    """
    bright = (image.min(axis=2) > BRIGHT).astype(np.uint8)
    if bright.mean() > 0.5:  # a light page: text on it is dark, pass one reads it
        return []
    dark = image.max(axis=2) < DARK
    count, labels, stats, _ = cv2.connectedComponentsWithStats(bright, connectivity=4)
    if count <= 1:
        return []
    height = image.shape[0]
    letter_sized = (stats[:, cv2.CC_STAT_HEIGHT] <= height / 3) & (stats[:, cv2.CC_STAT_AREA] >= 12)
    masks = []
    for ring_width in (1, 2):
        side = 2 * ring_width + 1
        grown = cv2.dilate(labels.astype(np.float32), np.ones((side, side), np.uint8))
        grown = grown.astype(np.int32)
        ring = (bright == 0) & (grown > 0)
        ring_labels = grown[ring]
        total = np.bincount(ring_labels, minlength=count)
        dark_count = np.bincount(ring_labels, weights=dark[ring], minlength=count)
        outlined = dark_count >= OUTLINE_FRACTION * np.maximum(total, 1)
        keep = outlined & letter_sized & (total > 0)
        keep[0] = False
        if int(keep.sum()) >= MIN_CAPTION_GLYPHS:
            masks.append(np.where(keep[labels], 0, 255).astype(np.uint8))
    return masks


def _parse_tsv(
    tsv: str, scale: float, width: int, height: int, min_confidence: float
) -> list[tuple[tuple[int, int, int], OcrWord]]:
    """Word rows (level 5) at or above `min_confidence`, boxes mapped back to the original."""
    words: list[tuple[tuple[int, int, int], OcrWord]] = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t", 11)
        if len(cols) != 12 or cols[0] != "5":
            continue
        text = cols[11].strip()
        try:
            confidence = float(cols[10])
            block, par, line = int(cols[2]), int(cols[3]), int(cols[4])
            left, top, w, h = (int(v) for v in cols[6:10])
        except ValueError:
            continue
        if not text or confidence < min_confidence:
            continue
        x0 = min(max(int(left / scale), 0), width)
        y0 = min(max(int(top / scale), 0), height)
        x1 = min(max(int(np.ceil((left + w) / scale)), x0), width)
        y1 = min(max(int(np.ceil((top + h) / scale)), y0), height)
        words.append(((block, par, line), OcrWord(text, confidence, (x0, y0, x1 - x0, y1 - y0))))
    return words


def _score(words: list[tuple[tuple[int, int, int], OcrWord]]) -> float:
    """Confidence-weighted count of letters and digits: what a pass actually read."""
    return sum(word.confidence * len(_ALNUM.findall(word.text)) for _, word in words)


def _confident(words: list[tuple[tuple[int, int, int], OcrWord]]) -> bool:
    """A pass good enough that another would not beat it: several words, nearly all sure.

    Photos without text give a few words at 40-70 at most, so this does not stop the caption
    pass from running on a meme; a clean rendering gives every word 90+.
    """
    sure = sum(word.confidence >= CONFIDENT for _, word in words)
    return len(words) >= 3 and sure >= 0.8 * len(words)


def _is_capital_i(line: list[OcrWord], k: int) -> bool:
    """A "|" anywhere, or a line-initial "1" before a lower-case word ("1 will kill"), is an I.

    Both are how Tesseract misreads a capital I in sans-serif captions; a number at the start
    of a line is followed by a noun far more rarely than "I" is by a verb, and the cost of
    misreading "1 apple" as "I apple" is nil for moderation.
    """
    text = line[k].text
    if text == "|":
        return True
    following = line[k + 1].text if k + 1 < len(line) else ""
    return text == "1" and k == 0 and following.isalpha() and following.islower()


def _group(words: list[tuple[tuple[int, int, int], OcrWord]]) -> OcrResult:
    """Words into lines by (block, par, line), in Tesseract's reading order, with "|" fixed."""
    grouped: dict[tuple[int, int, int], list[OcrWord]] = {}
    for key, word in words:
        grouped.setdefault(key, []).append(word)
    lines: list[OcrLine] = []
    for (block, _, _), line_words in grouped.items():
        if all(word.text == "|" for word in line_words):
            continue  # a vertical rule or border, not an "I"
        fixed = [
            OcrWord("I", word.confidence, word.box) if _is_capital_i(line_words, k) else word
            for k, word in enumerate(line_words)
        ]
        boxes = np.array([word.box for word in fixed])
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
        lines.append(
            OcrLine(
                text=" ".join(word.text for word in fixed),
                box=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
                words=fixed,
                block=block,
            )
        )
    return OcrResult(text="\n".join(line.text for line in lines), lines=lines)
