"""Benchmark: how fast the int8 encoder would be with fewer layers, against plain
sentence-transformers with all of them (issue 22's 8x question).

Usage:
    python bench/encoder_depth.py [--layers 6,3,2] [--short 2000] [--long 60] [--root DIR]

For each depth N, all-MiniLM-L6-v2 is cut to its first N transformer layers and exported the
way the shipped encoder is (`bastion.models.onnx_export.export_encoder`: fused graph, dynamic
int8), then `OnnxTextEncoder.encode` is timed on the throughput bench's texts (distinct short
Davidson posts, and 512-token texts the encoder cuts at 256 tokens), 2 threads, best of 2.
Plain is `SentenceTransformer.encode` of the uncut model (fp32, batch 64, 2 threads), timed in
the same process on the same texts. The weights do not change the speed, so the cut encoders
are not trained here: how much detection fewer layers cost is a separate run of
`bench/generalisation.py --encoder DIR` (bench/RESULTS.md). Only the encoder is timed, not the
rest of the default path. Writes bench/out/encoder_depth.json (and .md).
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bastion.items import Item
from bastion.models.encoder import TextEncoder
from bastion.models.onnx_export import export_encoder
from bastion.models.onnx_runtime import OnnxTextEncoder
from common import git, run_meta, write_result  # bench/ is on sys.path when a benchmark runs
from throughput import PLAIN_BATCH, short_and_long

THREADS = 2


def cut(encoder: TextEncoder, keep: Sequence[int]) -> TextEncoder:
    """A copy of `encoder` that keeps only the transformer layers numbered in `keep`, in order
    (bench/generalisation.py's distillation starts its student from one too)."""
    import torch

    short = copy.deepcopy(encoder)
    model = short._model[0].auto_model
    total = len(model.encoder.layer)
    if not keep or not all(0 <= i < total for i in keep):
        raise SystemExit(f"layers {list(keep)}: this encoder has layers 0 to {total - 1}")
    model.encoder.layer = torch.nn.ModuleList(model.encoder.layer[i] for i in keep)
    model.config.num_hidden_layers = len(keep)
    return short


def rate(encode: Callable[[Sequence[str]], Any], texts: Sequence[str], rounds: int = 2) -> float:
    """Items per second, the best of `rounds` runs after a warm-up call."""
    encode(texts[:64])
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        encode(texts)
        best = max(best, len(texts) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", default="6,3,2", help="depths to time, comma-separated")
    parser.add_argument("--short", type=int, default=2000, help="short posts")
    parser.add_argument("--long", type=int, default=60, help="512-token texts")
    parser.add_argument("--root", default=None, help="datasets directory")
    parser.add_argument("--out", default="bench/out/encoder_depth.json")
    args = parser.parse_args()
    load_before = os.getloadavg()

    import torch

    torch.set_num_threads(THREADS)
    short, _, long, _ = short_and_long(args.root, args.short, args.long)
    sets = {"short": [Item(text=t).scoring_text for t in short], "long": long}
    full = TextEncoder()
    plain = full._model
    rows: list[dict[str, Any]] = []
    console = Console()
    with tempfile.TemporaryDirectory(prefix="encoder-depth-") as work:
        base = {
            name: rate(
                lambda t: plain.encode(t, batch_size=PLAIN_BATCH, normalize_embeddings=True), texts
            )
            for name, texts in sets.items()
        }
        for layers in [int(x) for x in args.layers.split(",")]:
            console.print(f"{layers} layers: exporting")
            out = Path(work) / f"layers-{layers}"
            export_encoder(cut(full, range(layers)), out, texts=sets["short"][:50])
            encoder = OnnxTextEncoder(out, threads=THREADS)
            row: dict[str, Any] = {"layers": layers}
            for name, texts in sets.items():
                items = rate(encoder.encode, texts)
                row[f"{name}_per_s"] = round(items, 1)
                row[f"{name}_x_plain"] = round(items / base[name], 2)
            rows.append(row)
            console.print(row)
    result = {
        "meta": {
            **run_meta(load_before),
            "git": git(),
            "threads": THREADS,
            "short_texts": len(sets["short"]),
            "long_texts": len(sets["long"]),
            "plain_per_s": {k: round(v, 1) for k, v in base.items()},
        },
        "rows": rows,
    }
    table = Table(
        "layers", "short posts/s", "x plain", "long texts/s", "x plain",
        title=f"int8 encoder by depth (plain fp32: {base['short']:.0f} short, "
        f"{base['long']:.1f} long per s)",
    )  # fmt: skip
    lines = [
        "| layers | short posts/s | x plain | 256-token texts/s | x plain |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [
            str(r["layers"]),
            f"{r['short_per_s']:,.0f}",
            f"{r['short_x_plain']:.1f}",
            f"{r['long_per_s']:.0f}",
            f"{r['long_x_plain']:.1f}",
        ]
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    meta = result["meta"]
    head = (
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; git {meta['git']}; "
        f"{THREADS} threads; plain fp32 {base['short']:.1f} short and {base['long']:.1f} long "
        "texts/s, best of 2.\n\n"
    )
    paths = write_result(result, args.out, head + "\n".join(lines) + "\n")
    console.print(f"wrote {paths[0]} and {paths[1]}")


if __name__ == "__main__":
    main()
