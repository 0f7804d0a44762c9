"""Benchmark: media throughput, images per second and seconds of video per second, per stage.

Usage:
    python bench/media.py [--images 40] [--videos 4] [--video-seconds 20]

Builds a mix of media in a temporary directory with the test helpers (tests/media/media_factory.py):
rendered sentences (benign and harmful, several fonts and sizes, light, dark and noisy), meme
captions over the scikit-image sample photos, plain photos and 1280x720 chat "screenshots"; and
1280x720 videos at 25 or 30 fps (panning shots of the sample photos cut every few seconds, some
captioned, a title card, and a soundtrack of espeak-ng sentences). Then times:

* the image stages: decode (in the decoder process pool), OCR (Tesseract), NudeNet, PDQ, and the
  text scoring of what OCR read;
* the video stages: decode (in the decoder process: frame sampling, audio extraction and vPDQ),
  OCR and NudeNet on the sampled frames, Whisper on the soundtrack, text scoring of the frames'
  text and the transcripts; vPDQ alone is also timed in-process, outside the stage sum;
* end to end, `Moderator("openai").moderate` on one item per image and one item per video.

Each stage runs the whole batch the way the Moderator does (decodes two at a time, one OCR/NudeNet
batch over all images or frames), after one warm-up pass that loads the models and starts the
decoder processes. Writes bench/out/media.json (and .md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from bastion.detectors.ocr import MIN_OCR_CHARS
from bastion.items import Item
from bastion.media.hashing import pdq_hash, vpdq_hashes
from bastion.media.limits import MediaLimits
from bastion.media.nudenet import NudeNet
from bastion.media.ocr import Tesseract
from bastion.media.sandbox import DecoderPool
from bastion.media.sources import MediaSource
from bastion.media.speech import load_transcriber
from bastion.moderator import Moderator
from common import machine  # bench/ is on sys.path when a benchmark runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "media"))
import media_factory as mf  # noqa: E402 - needs the path above

BENIGN = [
    "Happy birthday to my amazing sister, have the best day ever!",
    "The farmers market opens at nine on Saturday, bring your own bags.",
    "Our cat learned to open the fridge and now nothing is safe.",
    "Meeting moved to Thursday afternoon, same room as last week.",
    "This recipe needs two cups of flour and a pinch of salt.",
    "Congratulations on the new job, we are all so proud of you.",
    "The train to the coast was late again but the view was worth it.",
    "Please remember to water the plants while I am away.",
    "We won the match three to one, what a game that was.",
    "The library is closed on Monday for the public holiday.",
]
HARMFUL = [
    "I know where you live and I will hurt you and your family.",
    "Kill yourself, nobody would even notice you were gone.",
    "All of those people are vermin and should be wiped out.",
    "Send me the money or I will post your private photos everywhere.",
    "You are a worthless pathetic idiot and everyone hates you.",
    "Meet me after school, I am bringing a knife for you.",
    "Buy cheap guns with no background check, message me now.",
    "I want to cut myself again tonight, it is the only thing that helps.",
    "Those immigrants are animals, burn their houses down.",
    "I will shoot everyone at the office tomorrow morning.",
]
PHOTOS = ("astronaut", "chelsea", "coffee", "camera")
KINDS = ("text", "meme", "text", "screenshot", "photo")
SIZE = (1280, 720)
UNIQUE_PER_SECOND = 5  # distinct frames per second of video (each held fps / 5 frames)
SCENE_SECONDS = 3.0


# --------------------------------------------------------------------------- building media


def _sentence(i: int) -> str:
    return (HARMFUL if i % 2 else BENIGN)[(i // 2) % len(BENIGN)]


def _cover(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize `image` to cover width x height (keeping its aspect ratio), no crop."""
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    size = (math.ceil(w * scale), math.ceil(h * scale))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def _paste(canvas: np.ndarray, block: np.ndarray, x: int, y: int) -> int:
    """Paste `block` at (x, y), clipped to the canvas; returns the y below it."""
    h = min(block.shape[0], canvas.shape[0] - y)
    w = min(block.shape[1], canvas.shape[1] - x)
    if h > 0 and w > 0:
        canvas[y : y + h, x : x + w] = block[:h, :w]
    return y + block.shape[0]


def _screenshot(i: int) -> np.ndarray:
    """A 1280x720 chat screenshot: a header bar and message bubbles, left and right."""
    width, height = SIZE
    canvas = np.full((height, width, 3), 246, dtype=np.uint8)
    canvas[:64] = (40, 44, 52)
    _paste(
        canvas,
        mf.render_text(
            "Group chat", size=28, padding=14, background=(40, 44, 52), foreground="white"
        ),
        24,
        0,
    )
    y = 88
    for k in range(5):
        text = _sentence(i + k)
        mine = k % 2 == 1
        bubble = mf.render_text(
            text,
            font=mf.FONTS[0] if mf.FONTS else None,
            size=24,
            width=760,
            padding=16,
            background=(0, 122, 255) if mine else (229, 229, 234),
            foreground="white" if mine else "black",
        )
        x = width - bubble.shape[1] - 24 if mine else 24
        y = _paste(canvas, bubble, x, y) + 20
        if y >= height:
            break
    return canvas


def build_images(n: int, directory: Path) -> list[dict[str, Any]]:
    """`n` images cycling text renders, memes, screenshots and photos; returns their facts."""
    sizes = (18, 24, 32, 44, 60)
    widths = (None, 640, 900)
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        photo = PHOTOS[(i // len(KINDS)) % len(PHOTOS)]
        fmt = "png"
        if kind == "text":
            style = (i // 2) % 4
            background, foreground = {
                0: ("white", "black"),
                1: ((24, 24, 28), (240, 240, 240)),
                2: ((250, 240, 200), (60, 20, 20)),
                3: ((200, 220, 255), "black"),
            }[style]
            image = mf.render_text(
                _sentence(i),
                font=mf.FONTS[i % len(mf.FONTS)] if mf.FONTS else None,
                size=sizes[i % len(sizes)],
                width=widths[i % len(widths)],
                background=background,
                foreground=foreground,
                noise=style == 3,
            )
            fmt = "png" if i % 3 else "jpg"
        elif kind == "meme":
            image = mf.caption_photo(
                _cover(mf.sample_photo(photo), 640, 480), _sentence(i), size=40
            )
            fmt = "jpg"
        elif kind == "screenshot":
            image = _screenshot(i)
            fmt = "jpg"
        else:
            image = mf.sample_photo(photo)
            fmt = "jpg" if i % 2 else "png"
        path = mf.save_image(image, directory / f"image_{i:03d}_{kind}.{fmt}", quality=85)
        out.append(
            {
                "path": path,
                "kind": kind,
                "width": int(image.shape[1]),
                "height": int(image.shape[0]),
                "bytes": path.stat().st_size,
            }
        )
    return out


def _speech(seconds: float, offset: int, directory: Path) -> np.ndarray:
    """About `seconds` of espeak-ng sentences at 16 kHz, benign and harmful mixed, padded to length."""
    rate = 16_000
    gap = np.zeros(int(0.4 * rate), dtype=np.float32)
    pieces: list[np.ndarray] = []
    total, k = 0, 0
    while total < (seconds - 1.0) * rate:
        text = _sentence(offset + k)
        wav = mf.speech_wav(text, directory / f"speech_{offset + k:03d}.wav")
        clip = mf.read_wav_16k(wav)
        pieces += [clip, gap]
        total += clip.size + gap.size
        k += 1
    samples = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    target = int(seconds * rate)
    samples = samples[:target]
    return np.pad(samples, (0, target - samples.size))


def _scene_frames(
    photo: str, caption: str | None, n: int, width: int, height: int
) -> list[np.ndarray]:
    """`n` frames panning across a sample photo (covering width x height); a caption, if any,
    stays put on screen over the moving picture, as an overlay does."""
    base = _cover(mf.sample_photo(photo), int(width * 1.08), int(height * 1.08))
    dx, dy = base.shape[1] - width, base.shape[0] - height
    frames = []
    for f in range(n):
        t = f / max(1, n - 1)
        x, y = round(dx * t), round(dy * (1 - t))
        frame = np.ascontiguousarray(base[y : y + height, x : x + width])
        if caption is not None:
            frame = mf.caption_photo(frame, caption, size=max(20, height // 15))
        frames.append(frame)
    return frames


def build_video(
    path: Path, seconds: float, fps: int, index: int, directory: Path, size: tuple[int, int] = SIZE
) -> dict[str, Any]:
    """A video of `seconds`: a title card, then panning shots cut every SCENE_SECONDS, with speech."""
    width, height = size
    per_scene = round(SCENE_SECONDS * UNIQUE_PER_SECOND)
    total = round(seconds * UNIQUE_PER_SECOND)
    frames: list[np.ndarray] = []
    card = mf.render_text(
        _sentence(index + 1),
        size=max(24, height // 14),
        width=width,
        background=(20, 20, 30),
        foreground="white",
    )
    title = np.zeros((height, width, 3), dtype=np.uint8)
    title[:] = (20, 20, 30)
    _paste(title, card, 0, max(0, (height - card.shape[0]) // 2))
    frames += [title] * min(per_scene, total)
    scene = 0
    while len(frames) < total:
        photo = PHOTOS[(index + scene) % len(PHOTOS)]
        caption = _sentence(index + scene) if scene % 2 == 0 else None
        n = min(per_scene, total - len(frames))
        frames += _scene_frames(photo, caption, n, width, height)
        scene += 1
    audio = _speech(seconds, index * 7, directory)
    mf.make_video(path, frames, fps=fps, seconds_per_frame=1 / UNIQUE_PER_SECOND, audio=audio)
    return {
        "path": path,
        "seconds": seconds,
        "fps": fps,
        "width": width,
        "height": height,
        "scenes": scene + 1,
        "bytes": path.stat().st_size,
    }


# --------------------------------------------------------------------------- timing


class Stages:
    """Wall-clock seconds per named stage, in the order they were first timed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def time(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return result

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def rows(self, n_items: int) -> list[dict[str, Any]]:
        total = self.total or 1.0
        return [
            {
                "stage": name,
                "seconds": s,
                "share": s / total,
                "ms_per_item": 1000 * s / max(1, n_items),
            }
            for name, s in self.seconds.items()
        ]


def decode_all(
    pool: DecoderPool, paths: Sequence[Path], kind: str
) -> tuple[list[Any], list[float]]:
    """Decode every file through the pool, `pool.workers` at a time (as MediaModerator does)."""
    per_call: list[float] = [0.0] * len(paths)

    def one(k: int) -> Any:
        start = time.perf_counter()
        decoded = pool.decode(MediaSource.of(paths[k], kind))  # type: ignore[arg-type]
        per_call[k] = time.perf_counter() - start
        return decoded

    with ThreadPoolExecutor(max(1, pool.workers)) as ex:
        return list(ex.map(one, range(len(paths)))), per_call


def _readable(results: Sequence[Any]) -> list[str]:
    return [r.text for r in results if sum(ch.isalnum() for ch in r.text) >= MIN_OCR_CHARS]


def image_stages(
    paths: Sequence[Path], pool: DecoderPool, ocr: Tesseract, nudenet: NudeNet, moderator: Moderator
) -> tuple[Stages, dict[str, Any]]:
    st = Stages()
    decoded, per_call = st.time("decode (decoder pool)", lambda: decode_all(pool, paths, "image"))
    frames = [frame for d in decoded for frame in d.frames]
    results = st.time("OCR (Tesseract)", lambda: ocr.read_many(frames))
    regions = st.time("NudeNet", lambda: nudenet.detect(frames))
    st.time("PDQ", lambda: [pdq_hash(d.frames[0]) for d in decoded])
    texts = _readable(results)
    if texts:
        st.time("text scoring (OCR text)", lambda: moderator.score_texts(texts))
    facts = {
        "frames": len(frames),
        "images_with_text_read": len(texts),
        "images_with_regions": sum(bool(r) for r in regions),
        "decode_seconds_per_call": per_call,
    }
    return st, facts


def video_stages(
    paths: Sequence[Path], pool: DecoderPool, ocr: Tesseract, nudenet: NudeNet, moderator: Moderator
) -> tuple[Stages, dict[str, Any]]:
    st = Stages()
    decoded, per_call = st.time(
        "decode + sampling + audio + vPDQ (decoder pool)", lambda: decode_all(pool, paths, "video")
    )
    frames = [f.image for d in decoded for f in d.frames]
    results = st.time("OCR on sampled frames (Tesseract)", lambda: ocr.read_many(frames))
    st.time("NudeNet on sampled frames", lambda: nudenet.detect(frames))
    tracks = [d.audio.samples for d in decoded if d.audio is not None and d.audio.samples.size]
    transcripts = st.time("speech (Whisper)", lambda: load_transcriber().transcribe_many(tracks))
    frame_texts = _readable(results)
    speech_texts: list[str] = []
    for tr in transcripts:  # as SpeechDetector: the whole transcript, and each segment
        if tr.text.strip():
            speech_texts.append(tr.text)
            if len(tr.segments) > 1:
                speech_texts += [seg.text.strip() for seg in tr.segments]

    def score() -> None:
        for texts in (frame_texts, speech_texts):  # two calls, as the OCR and speech detectors
            if texts:
                moderator.score_texts(texts)

    st.time("text scoring (frame text + speech)", score)
    facts = {
        "sampled_frames": len(frames),
        "sampled_frames_per_video": [len(d.frames) for d in decoded],
        "frames_with_text_read": len(frame_texts),
        "speech_texts_scored": len(speech_texts),
        "vpdq_hashes": sum(len(d.hashes) for d in decoded),
        "audio_seconds": sum(d.audio.duration_s for d in decoded if d.audio is not None),
        "decoded_duration_s": [d.duration_s for d in decoded],
        "decode_seconds_per_call": per_call,
        "transcript_sample": transcripts[0].text[:200] if transcripts else "",
    }
    return st, facts


def end_to_end(moderator: Moderator, items: list[Item]) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    verdicts = moderator.moderate(items)
    seconds = time.perf_counter() - start
    return seconds, {
        "items": len(verdicts),
        "errors": sum(v.error is not None for v in verdicts),
        "flagged": sum(v.flagged for v in verdicts),
    }


# --------------------------------------------------------------------------- reporting


def versions() -> dict[str, str]:
    import av
    import ctranslate2
    import faster_whisper
    import onnxruntime

    try:
        done = subprocess.run(
            ["tesseract", "--version"], capture_output=True, text=True, check=False
        )
        tesseract = (done.stdout or done.stderr).splitlines()[0].strip()
    except (OSError, IndexError):
        tesseract = "unknown"
    return {
        "tesseract": tesseract,
        "onnxruntime": onnxruntime.__version__,
        "ctranslate2": ctranslate2.__version__,
        "faster_whisper": faster_whisper.__version__,
        "pyav": av.__version__,
    }


def _stage_table(title: str, stages: Stages, n_items: int, unit: str) -> Table:
    table = Table("stage", "seconds", "share", f"ms per {unit}", title=title)
    for r in stages.rows(n_items):
        table.add_row(
            r["stage"],
            f"{r['seconds']:.2f}",
            f"{100 * r['share']:.1f} %",
            f"{r['ms_per_item']:.0f}",
        )
    table.add_row(
        "stage sum",
        f"{stages.total:.2f}",
        "100 %",
        f"{1000 * stages.total / n_items:.0f}",
        style="bold",
    )
    return table


def _markdown(result: dict[str, Any]) -> str:
    meta, cfg = result["meta"], result["config"]
    lines = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; load average "
        f"{meta['load_average_before'][0]:.2f} before, {meta['load_average_after'][0]:.2f} after; "
        f"{cfg['images']} images, {cfg['videos']} videos of {cfg['video_seconds']:g} s at "
        f"{cfg['video_size']}; {meta['versions']['tesseract']}, onnxruntime "
        f"{meta['versions']['onnxruntime']}, ctranslate2 {meta['versions']['ctranslate2']}.",
        "",
        "| measure | value |",
        "|---|---:|",
    ]
    for name, value in result["headline"].items():
        lines.append(f"| {name} | **{value:.2f}** |")
    for key, unit in (("image_stages", "image"), ("video_stages", "video")):
        lines += ["", f"| {unit} stage | seconds | share | ms per {unit} |", "|---|---:|---:|---:|"]
        for r in result[key]["rows"]:
            lines.append(
                f"| {r['stage']} | {r['seconds']:.2f} | {100 * r['share']:.1f} % | {r['ms_per_item']:.0f} |"
            )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40, help="images in the mix")
    parser.add_argument("--videos", type=int, default=4, help="videos (1280x720, 25/30 fps)")
    parser.add_argument("--video-seconds", type=float, default=20.0, help="length of each video")
    parser.add_argument("--workers", type=int, default=2, help="decoder processes")
    parser.add_argument("--out", default="bench/out/media.json")
    parser.add_argument(
        "--keep-media",
        default=None,
        help="build the media in this folder and keep it (default: a temp dir)",
    )
    args = parser.parse_args()
    if args.images < 1 or args.videos < 1 or args.video_seconds < 2:
        parser.error("need at least one image, one video and 2 s of video")
    console = Console(width=160)
    load_before = os.getloadavg()

    if args.keep_media:
        where: contextlib.AbstractContextManager[str] = contextlib.nullcontext(args.keep_media)
    else:
        where = tempfile.TemporaryDirectory(prefix="bastion-bench-media-")
    with where as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        images = build_images(args.images, root / "images")
        videos = [
            build_video(
                root / "videos" / f"video_{k}.mp4",
                args.video_seconds,
                (25, 30)[k % 2],
                k,
                root / "speech",
            )
            for k in range(args.videos)
        ]
        warm_images = [p["path"] for p in build_images(2, root / "warm")]
        warm_videos = [
            build_video(
                root / "warm" / f"warm_{k}.mp4", 3.0, 25, 5 + k, root / "speech", size=(640, 360)
            )["path"]
            for k in range(2)
        ]
        build_s = time.perf_counter() - start
        image_paths = [p["path"] for p in images]
        video_paths = [v["path"] for v in videos]
        video_seconds = sum(v["seconds"] for v in videos)
        console.print(
            f"built {len(images)} images and {len(videos)} videos ({video_seconds:g} s) in {build_s:.1f} s"
        )

        # Stage by stage, with the same components the Moderator uses.
        moderator = Moderator("openai")
        limits = MediaLimits()
        pool = DecoderPool(limits, workers=args.workers)
        ocr, nudenet = Tesseract(), NudeNet()
        start = time.perf_counter()
        image_stages(warm_images, pool, ocr, nudenet, moderator)
        video_stages(warm_videos, pool, ocr, nudenet, moderator)
        warm_stages_s = time.perf_counter() - start
        img_st, img_facts = image_stages(image_paths, pool, ocr, nudenet, moderator)
        vid_st, vid_facts = video_stages(video_paths, pool, ocr, nudenet, moderator)
        pool.close()
        vpdq_s = 0.0
        for path in video_paths:  # vPDQ alone, in this process, one video after another
            start = time.perf_counter()
            vpdq_hashes(path, limits.vpdq_seconds_per_hash)
            vpdq_s += time.perf_counter() - start

        # End to end through the Moderator (its own decoder processes, started by the warm-up).
        start = time.perf_counter()
        moderator.moderate([Item(images=[p]) for p in warm_images])
        moderator.moderate([Item(video=p) for p in warm_videos])
        warm_e2e_s = time.perf_counter() - start
        img_e2e_s, img_e2e = end_to_end(moderator, [Item(images=[p]) for p in image_paths])
        vid_e2e_s, vid_e2e = end_to_end(moderator, [Item(video=p) for p in video_paths])
        moderator.close()

    load_after = os.getloadavg()
    headline = {
        "images/s (stages)": len(images) / img_st.total,
        "images/s (Moderator end to end)": len(images) / img_e2e_s,
        "video s per s (stages)": video_seconds / vid_st.total,
        "video s per s (end to end)": video_seconds / vid_e2e_s,
    }

    console.print(
        _stage_table(
            f"Images: {len(images)} (mix of text, memes, screenshots, photos)",
            img_st,
            len(images),
            "image",
        )
    )
    console.print(
        _stage_table(
            f"Video: {len(videos)} x {args.video_seconds:g} s at {SIZE[0]}x{SIZE[1]}, "
            f"{vid_facts['sampled_frames']} sampled frames",
            vid_st,
            len(videos),
            "video",
        )
    )
    console.print(
        f"vPDQ alone (in-process, one video at a time, outside the stage sum): {vpdq_s:.2f} s "
        f"({1000 * vpdq_s / len(videos):.0f} ms per video)"
    )
    summary = Table("measure", "value", "seconds", title="Throughput")
    summary.add_row(
        "images/s (stages)", f"{headline['images/s (stages)']:.2f}", f"{img_st.total:.2f}"
    )
    summary.add_row(
        "images/s (Moderator end to end)",
        f"{headline['images/s (Moderator end to end)']:.2f}",
        f"{img_e2e_s:.2f}",
    )
    summary.add_row(
        "video s per s (stages)", f"{headline['video s per s (stages)']:.2f}", f"{vid_st.total:.2f}"
    )
    summary.add_row(
        "video s per s (end to end)",
        f"{headline['video s per s (end to end)']:.2f}",
        f"{vid_e2e_s:.2f}",
    )
    console.print(summary)
    console.print(
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before / {load_after[0]:.2f} after; "
        f"warm-up {warm_stages_s:.1f} s (stages) + {warm_e2e_s:.1f} s (end to end); "
        f"end to end: images {img_e2e['errors']} errors, {img_e2e['flagged']} flagged; "
        f"videos {vid_e2e['errors']} errors, {vid_e2e['flagged']} flagged"
    )

    kinds = [im["kind"] for im in images]
    result = {
        "meta": {
            "date": date.today().isoformat(),
            "machine": machine(),
            "cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "load_average_before": list(load_before),
            "load_average_after": list(load_after),
            "versions": versions(),
            "model_version": moderator.model_version,
            "policy": moderator.policy.version,
        },
        "config": {
            "images": len(images),
            "image_kinds": {k: kinds.count(k) for k in dict.fromkeys(kinds)},
            "image_sizes": [f"{im['width']}x{im['height']}" for im in images],
            "image_bytes": sum(im["bytes"] for im in images),
            "videos": len(videos),
            "video_seconds": args.video_seconds,
            "video_seconds_total": video_seconds,
            "video_size": f"{SIZE[0]}x{SIZE[1]}",
            "video_fps": [v["fps"] for v in videos],
            "video_scenes": [v["scenes"] for v in videos],
            "video_bytes": [v["bytes"] for v in videos],
            "decoder_workers": args.workers,
            "media_limits": limits.model_dump(),
            "build_seconds": build_s,
        },
        "headline": headline,
        "image_stages": {
            "rows": img_st.rows(len(images)),
            "sum_seconds": img_st.total,
            **img_facts,
        },
        "video_stages": {
            "rows": vid_st.rows(len(videos)),
            "sum_seconds": vid_st.total,
            "vpdq_alone_seconds": vpdq_s,
            **vid_facts,
        },
        "end_to_end": {
            "images": {"seconds": img_e2e_s, **img_e2e},
            "videos": {"seconds": vid_e2e_s, **vid_e2e},
            "warm_up_seconds": warm_e2e_s,
        },
        "warm_up_stage_seconds": warm_stages_s,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    md = out.with_suffix(".md")
    md.write_text(_markdown(result), encoding="utf-8")
    console.print(f"wrote {out} and {md}")


if __name__ == "__main__":
    main()
