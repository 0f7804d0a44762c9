"""Benchmark: recall of an emerging harm, one rare narrow violation hidden in a 50,000-item pool.

Usage:
    python bench/recall.py [--pool 50000] [--hazard ncr] [--bank 20] [--seed 0] [--root DIR]

The pool (all texts from the shared sets, read with `bastion.eval.datasets.load_dataset`):

* **background**, "everything else": Davidson et al.'s tweets (MIT, ship-ok) and ToxiGen's
  statements (MIT + CDLA-Permissive-2.0, ship-ok), *whatever their labels*: hate, profanity and
  neutral posts alike, deduplicated by exact text (24,783 + 668 = 25,451 distinct texts), in
  seeded order. A pool needing more background than that (the full 50,000 needs about 49,900)
  fills the rest with *reposts*: background texts drawn again at random (seeded), each under its
  own id, author and reach, as retweets are on a real platform. So about half of the full pool's
  background repeats a text found elsewhere in the pool; no planted text is ever repeated.
* **planted**, the rare harm: the English AILuminate prompts (CC-BY-4.0, ship-ok) of one narrow
  hazard (`--hazard`, default `ncr`, non-violent crimes: fraud, theft, drugs, hacking; 100
  prompts). `--bank` of them (default 20, seeded) are the *known examples*, given to Bastion as an
  embedding bank and as a near-duplicate text bank (category `illicit`) and left out of the
  pool; of the other 80, at most 0.9 % of the pool is planted (all 80 = 0.16 % of 50,000; 27 of
  a `--pool 3000` pool). Those planted items are what recall must find.

Every item has an **author** and a **reach** (JSONL fields, so they become the item's metadata):

* Background authors are drawn uniformly from `pool / 5` accounts (about 5 posts each, so most
  have the 3 posts the source channel needs).
* Campaign accounts give the per-source channel something to find: `max(1, planted // 10)`
  accounts each post 2 planted items plus 12 *borderline* background items (ones the datasets
  label violating: a Davidson hate/offensive tweet or a ToxiGen hate statement). The other
  planted items come from one-off accounts with a single post, which the source channel cannot
  score (it needs 3 posts per author), so its recall is at most the campaign share (about 20 %).
* Reach is lognormal (median e^4 ≈ 55 viewers, sigma 2), seeded; recall ignores it (ranking
  uses it, see bench/ranking.py).

Bastion runs `bastion.triage.recall.recall` once over the pool (a JSONL file read through
`open_input`) with the default `Moderator("openai")` and default `RecallSettings`, and each
channel's order of the whole pool is read from `RecallResult.order(channel)`; "all channels
merged" is `order()` (reciprocal-rank fusion). The **classifier channel alone is the baseline**:
it is what a platform without banks gets by sorting on the trained classifier's top category
score. The **hash** channel has nothing to do here (the shared sets hold no images) and is
reported as n/a.

How to read the numbers: recall@K is the share of planted items among the first K of a channel's
order. K is 100, 1,000 and 5,000 for a 50,000-item pool and scaled down proportionally with
`--pool` (K × pool / 50,000, at least 1; the table shows the K used). An item a channel has no
score for (no text-bank match, a one-off author) is never counted as found by that channel, even
where the pool order of its unscored tail would put it within K. "hit" is the share of planted
items the channel's own hit rule recalled as a candidate (`RecallSettings`), and "hits" how many
pool items it recalled in all: recall@K says how well a channel orders, hit share how far its
candidate set reaches and at what cost in review load.

Writes bench/out/recall.json (and .md). Seeds are fixed (`--seed`). Run time on 2 cores is
dominated by encoding every text twice (the classifier, then the embedding bank): the full
50,000 items recalled at 224 items/s (about 4 minutes; reposts are cheaper than new texts).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from bastion.banks.embeddings import EmbeddingBank
from bastion.banks.entries import Entry, Label
from bastion.banks.text import TextBank
from bastion.batch.inputs import open_input
from bastion.eval.datasets import load_dataset
from bastion.moderator import Moderator
from bastion.triage.rank import CHANNELS
from bastion.triage.recall import RecallResult, recall
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs

POLICY = "openai"
CATEGORY = "illicit"  # the openai pack's category for AILuminate's crime hazards
FULL_POOL = 50_000
FULL_KS = (100, 1_000, 5_000)
MAX_PLANTED_SHARE = 0.009
BACKGROUND = ("davidson", "toxigen")
RARE_SET = "ailuminate_en"
CAMPAIGN_PLANTED = 2
CAMPAIGN_BORDERLINE = 12
ITEMS_PER_AUTHOR = 5
REACH_MU, REACH_SIGMA = 4.0, 2.0
#: Rows of the table: each channel alone, then all merged (None: RRF over every channel).
ROWS: tuple[tuple[str, str | None], ...] = (
    ("hash", "hash"),
    ("text bank", "text"),
    ("embedding bank", "embedding"),
    ("classifier (baseline)", "classifier"),
    ("source", "source"),
    ("all channels merged (RRF)", None),
)


# --------------------------------------------------------------------------- pool


def build_pool(
    root: str | None, size: int, hazard: str, n_bank: int, seed: int
) -> tuple[list[dict[str, Any]], list[str], set[str], dict[str, Any]]:
    """Pool rows (id, text, author, reach), the bank's known examples, the planted ids, facts."""
    rng = np.random.default_rng(seed)
    rare = load_dataset(RARE_SET, root=root)
    harm = [t for t, n in zip(rare.texts, rare.native, strict=True) if n == hazard]
    if len(harm) <= n_bank:
        raise SystemExit(
            f"{RARE_SET} has {len(harm)} prompts of hazard {hazard!r}; need > {n_bank}"
        )
    harm = [harm[i] for i in rng.permutation(len(harm))]
    known, rest = harm[:n_bank], harm[n_bank:]
    n_planted = min(len(rest), int(size * MAX_PLANTED_SHARE))
    if n_planted < 1:
        raise SystemExit(f"a pool of {size} leaves no room for a planted item under 0.9 %")
    planted_texts = rest[:n_planted]

    seen: set[str] = set(harm)
    back_texts: list[str] = []
    back_bad: list[bool] = []
    back_from: list[str] = []
    for name in BACKGROUND:
        data = load_dataset(name, root=root)
        for text, label in zip(data.texts, data.binary, strict=True):
            if text.strip() and text not in seen:
                seen.add(text)
                back_texts.append(text)
                back_bad.append(bool(label == 1))
                back_from.append(name)
    n_back = size - n_planted
    pick = rng.permutation(len(back_texts))[:n_back]
    n_reposts = max(0, n_back - len(back_texts))
    if n_reposts:  # the two sets hold ~25,000 distinct texts: the rest are reposts of them
        pick = np.concatenate([pick, rng.integers(0, len(back_texts), n_reposts)])

    n_authors = max(1, n_back // ITEMS_PER_AUTHOR)
    rows: list[dict[str, Any]] = []
    for i in pick.tolist():
        rows.append(
            {"text": back_texts[i], "author": f"user-{int(rng.integers(n_authors))}",
             "borderline": back_bad[i], "from": back_from[i]}
        )  # fmt: skip
    # Campaign accounts: 2 planted items and 12 borderline background items each.
    n_campaign = max(1, n_planted // 10)
    borderline = [j for j, r in enumerate(rows) if r["borderline"]]
    borderline = [borderline[j] for j in rng.permutation(len(borderline))]
    for c in range(n_campaign):
        for j in borderline[c * CAMPAIGN_BORDERLINE : (c + 1) * CAMPAIGN_BORDERLINE]:
            rows[j]["author"] = f"campaign-{c}"
    for k, text in enumerate(planted_texts):
        in_campaign = k < n_campaign * CAMPAIGN_PLANTED
        author = f"campaign-{k // CAMPAIGN_PLANTED}" if in_campaign else f"one-off-{k}"
        rows.append({"text": text, "author": author, "planted": True, "from": RARE_SET})

    order = rng.permutation(len(rows))
    reach = np.rint(rng.lognormal(REACH_MU, REACH_SIGMA, len(rows))).astype(int)
    pool, planted = [], set()
    for pos, j in enumerate(order.tolist()):
        row = rows[j]
        item_id = f"item-{pos:06d}"
        if row.get("planted"):
            planted.add(item_id)
        pool.append(
            {"id": item_id, "text": row["text"], "author": row["author"], "reach": int(reach[pos])}
        )
    facts = {
        "pool": len(pool),
        "planted": n_planted,
        "planted_share": round(n_planted / len(pool), 5),
        "bank_examples": len(known),
        "hazard": hazard,
        "background": {n: sum(r["from"] == n for r in rows) for n in BACKGROUND},
        "background_distinct": len(back_texts),
        "background_reposts": int(n_reposts),
        "background_borderline": int(sum(bool(r.get("borderline")) for r in rows)),
        "campaign_accounts": n_campaign,
        "planted_in_campaigns": min(n_planted, n_campaign * CAMPAIGN_PLANTED),
        "borderline_per_campaign": CAMPAIGN_BORDERLINE,
        "background_authors": n_authors,
    }
    return pool, known, planted, facts


def banks(folder: Path, known: list[str], moderator: Moderator) -> tuple[EmbeddingBank, TextBank]:
    """An embedding bank and a text bank holding the known examples."""
    severity = {c.id: int(c.severity) for c in moderator.policy.categories}.get(CATEGORY, 3)
    label = Label(CATEGORY, severity=severity, source="bench/recall.py")
    embedding = EmbeddingBank.create(folder / "emerging-embedding", "emerging-embedding", {})
    embedding = embedding.add(
        Entry(f"known-{i}", "embedding", t, label) for i, t in enumerate(known)
    )
    text = TextBank.create(folder / "emerging-text", "emerging-text", {})
    text = text.add(Entry(f"known-{i}", "text", t, label) for i, t in enumerate(known))
    return embedding, text


# --------------------------------------------------------------------------- measures


def scaled_ks(pool: int) -> list[int]:
    return [max(1, round(k * pool / FULL_POOL)) for k in FULL_KS]


def channel_rows(result: RecallResult, planted: set[str], ks: list[int]) -> list[dict[str, Any]]:
    """Per table row: recall@K over the row's order, counting only items the channel scored."""
    index = {item_id: i for i, item_id in enumerate(result.ids)}
    rows: list[dict[str, Any]] = []
    for label, channel in ROWS:
        if channel == "hash":
            rows.append({"row": label, "channel": channel, "recall_at": None, "note": "no images"})
            continue
        if channel is None:
            scored = np.ones(len(result.ids), dtype=bool)
            hit: np.ndarray = np.asarray(result.hits.any(axis=1))
        else:
            j = CHANNELS.index(channel)
            scored = np.isfinite(result.scores[:, j])
            hit = result.hits[:, j]
        order = result.order(channel)
        recall_at = {}
        for k in ks:
            found = sum(1 for i in order[:k] if i in planted and scored[index[i]])
            recall_at[str(k)] = round(found / len(planted), 4)
        planted_rows = [index[i] for i in planted]
        rows.append(
            {
                "row": label,
                "channel": channel or "merged",
                "recall_at": recall_at,
                "planted_scored": round(float(scored[planted_rows].mean()), 4),
                "planted_hit": round(float(hit[planted_rows].mean()), 4),
                "hits": int(hit.sum()),
            }
        )
    return rows


# --------------------------------------------------------------------------- output


def table(result: dict[str, Any]) -> Table:
    meta, ks = result["meta"], result["meta"]["ks"]
    title = (
        f"Recall of planted '{meta['hazard']}' prompts ({meta['planted']} in a pool of "
        f"{meta['pool']:,}, {meta['planted_share']:.2%}; {meta['bank_examples']} known examples)"
    )
    table = Table(
        "channel", *(f"recall@{k:,}" for k in ks), "planted hit", "hits (review load)",
        title=title,
    )  # fmt: skip
    for r in result["rows"]:
        if r["recall_at"] is None:
            table.add_row(r["row"], *("n/a" for _ in ks), "n/a", f"n/a ({r['note']})")
            continue
        table.add_row(
            r["row"], *(f"{r['recall_at'][str(k)]:.1%}" for k in ks), f"{r['planted_hit']:.1%}",
            f"{r['hits']:,}",
        )  # fmt: skip
    return table


def markdown(result: dict[str, Any]) -> str:
    meta, ks = result["meta"], result["meta"]["ks"]
    lines = [
        f"Date {meta['date']}; {meta['machine']}; {meta['cpu_count']} CPUs; model "
        f"{meta['model_version']}; pool {meta['pool']:,} ({', '.join(f'{n} {c:,}' for n, c in meta['background'].items())}, "
        f"{meta['planted']} planted AILuminate '{meta['hazard']}' = {meta['planted_share']:.2%}); "
        f"{meta['bank_examples']} known examples in an embedding and a text bank; "
        f"{meta['campaign_accounts']} campaign accounts ({meta['planted_in_campaigns']} planted "
        f"items, {meta['borderline_per_campaign']} borderline items each); seed {meta['seed']}; "
        f"recall ran {meta['recall_seconds']:.0f} s ({meta['items_per_s']:.0f} items/s).",
        "",
        f"K scaled from 100 / 1,000 / 5,000 at 50,000 items to {' / '.join(f'{k:,}' for k in ks)}"
        f" at {meta['pool']:,}. The classifier row is the classifier-only baseline.",
        "",
        "| channel | " + " | ".join(f"recall@{k:,}" for k in ks) + " | planted hit | hits |",
        "|---|" + "---:|" * (len(ks) + 2),
    ]
    for r in result["rows"]:
        if r["recall_at"] is None:
            lines.append(f"| {r['row']} | " + " | ".join("n/a" for _ in ks) + f" | n/a | n/a ({r['note']}) |")  # fmt: skip
        else:
            cells = " | ".join(f"{r['recall_at'][str(k)]:.1%}" for k in ks)
            lines.append(f"| {r['row']} | {cells} | {r['planted_hit']:.1%} | {r['hits']:,} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pool", type=int, default=FULL_POOL, help="items in the pool")
    parser.add_argument("--hazard", default="ncr", help="AILuminate hazard code to plant")
    parser.add_argument("--bank", type=int, default=20, help="known examples given to the banks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="shared datasets folder")
    parser.add_argument("--out", default="bench/out/recall.json")
    args = parser.parse_args()
    console = Console(width=160)
    load_before = os.getloadavg()

    pool, known, planted, facts = build_pool(
        args.root, args.pool, args.hazard, args.bank, args.seed
    )
    ks = scaled_ks(len(pool))
    console.print(
        f"pool {len(pool):,}: {facts['background']} background, {len(planted)} planted "
        f"'{args.hazard}' ({facts['planted_share']:.2%}); {len(known)} known examples; K {ks}"
        + ("" if len(pool) == FULL_POOL else f" (scaled from {list(FULL_KS)} at {FULL_POOL:,})")
    )
    moderator = Moderator(POLICY)
    with tempfile.TemporaryDirectory(prefix="bastion-recall-") as tmp:
        folder = Path(tmp)
        embedding_bank, text_bank = banks(folder, known, moderator)
        path = folder / "pool.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in pool), "utf-8")
        with Progress(
            "recall", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as bar:
            task = bar.add_task("recall", total=len(pool))
            start = time.perf_counter()
            result = recall(
                open_input(path),
                moderator,
                banks=[text_bank, embedding_bank],
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
            seconds = time.perf_counter() - start
    if result.errors:
        raise SystemExit(f"{len(result.errors)} pool lines unreadable, first: {result.errors[0]}")

    out: dict[str, Any] = {
        "meta": {
            **run_meta(load_before),
            "policy": POLICY,
            "model_version": moderator.model_version,
            "seed": args.seed,
            "ks": ks,
            "ks_full_pool": list(FULL_KS),
            "ks_scaled": len(pool) != FULL_POOL,
            "recall_seconds": round(seconds, 1),
            "items_per_s": round(len(pool) / seconds, 1),
            "candidates": len(result.candidates),
            "hit_counts": result.hit_counts(),
            "licences": {
                "davidson": "MIT",
                "toxigen": "MIT + CDLA-Permissive-2.0",
                RARE_SET: "CC-BY-4.0",
            },
            **facts,
        },
        "rows": channel_rows(result, planted, ks),
    }
    console.print(table(out))
    console.print(
        f"hash: n/a (no images in the shared sets). Classifier = the classifier-only baseline. "
        f"{len(result.candidates):,} candidates; recall took {seconds:.0f} s "
        f"({len(pool) / seconds:.0f} items/s)."
    )
    target, md = write_result(out, args.out, markdown(out))
    console.print(f"wrote {target} and {md}")


if __name__ == "__main__":
    main()
