"""Benchmark: leave-one-dataset-out, the frozen-encoder head against the fine-tuned encoder.

Usage:
    python bench/generalisation.py [--recipe recipes/default.yaml]
        [--frozen recipes/frozen-head.yaml] [--folds toxic_spans,convabuse] [--steps 300]

For each dataset source of the recipe that has violating rows (the texts written for Bastion are
one more fold), both recipes are trained on every other source and scored on the one left out:
- frozen: a linear head over frozen all-MiniLM-L6-v2 embeddings, blended with zero-shot as in
  `--frozen`;
- fine-tuned: every encoder layer trained with the head as in `--recipe`, but for `--steps`
  optimiser steps per fold instead of the shipped model's (a fold would otherwise take most of an
  hour on 2 cores), so its numbers are a floor for the shipped model's;
- with `--distil-layers N`, also that fine-tuned encoder distilled into N of its own layers
  (`distil`), scored through the fine-tuned head (in the JSON as "distilled"); with
  `--distil-logits` the student also matches the head's outputs, and `--distil-texts M` adds M
  unlabelled texts of the fold's own training sources (rows the per-source cap left out).
Each fold is calibrated, and its thresholds chosen, on the calibration split of its own training
sources, exactly as `bastion train` does. Reported per fold and model: binary AUPRC of "any
category", and F1 and recall at the fold's thresholds; per category where the left-out set names
categories (AUPRC and recall); and the share of held-out hard safe texts flagged
(`checksets/hard_negatives.jsonl` plus the held-out half of CoCoNot's contrast set). A left-out
set that holds only violations is ranked against those hard safe texts. The texts written for
Bastion are scored on their check split (never trained on by any fold). Writes
bench/out/generalisation.json and .md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bastion.eval.datasets import ADAPTERS, label_map_for, load_dataset
from bastion.eval.labels import category_labels
from bastion.eval.metrics import binary_metrics, format_metric
from bastion.models.artifact import ModelArtifact
from bastion.models.embedding_cache import EmbeddingCache
from bastion.models.encoder import Encoder, TextEncoder, load_encoder
from bastion.models.heads import MultiLabelHead
from bastion.models.scoring import any_category
from bastion.policy import LoadedPolicy
from bastion.training.data import TrainingData, assemble, training_split
from bastion.training.fit import fit_model, fit_tuned, zero_shot_probs
from bastion.training.pipeline import tune_classifier
from bastion.training.recipe import Recipe, recipe_policy
from common import run_meta, write_result  # bench/ is on sys.path when a benchmark runs
from encoder_depth import cut

CHECKSET = Path("checksets/hard_negatives.jsonl")
WRITTEN, WRITTEN_CHECK = "bastion_written", "bastion_written_check"


def hard_safe_texts(recipe: Recipe, root: str | None) -> list[str]:
    """Held-out hard safe text: the check set, and the part of CoCoNot's contrast set that the
    recipe leaves out of training."""
    texts = [json.loads(x)["text"] for x in CHECKSET.read_text("utf-8").splitlines() if x]
    for spec in recipe.sources:
        if spec.dataset == "coconot_contrast" and spec.check_share:
            contrast = load_dataset("coconot_contrast", root=root)
            texts += [
                contrast.texts[i] for i in np.flatnonzero(contrast.check_part(spec.check_share))
            ]
    return texts


def test_set(
    name: str, data: TrainingData, k: int, root: str | None, policy: LoadedPolicy, limit: int
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, binary labels and category labels of the left-out fold (at most `limit` rows,
    stratified): the check split for the written texts, else the rows the recipe kept."""
    if name == WRITTEN:
        own = load_dataset(WRITTEN_CHECK, root=root)
        y = category_labels(own, policy, label_map_for(WRITTEN_CHECK, policy.policy.id))
        return own.texts, own.binary, y
    rows = np.flatnonzero(data.source == k)
    binary = data.binary()[rows]
    if len(rows) > limit:
        rng = np.random.default_rng(0)
        pos, rest = rows[binary == 1], rows[binary != 1]
        n_pos = round(limit * len(pos) / len(rows))
        rows = np.sort(
            np.r_[
                rng.choice(pos, n_pos, replace=False),
                rng.choice(rest, limit - n_pos, replace=False),
            ]
        )
    return [data.texts[i] for i in rows], data.binary()[rows], data.labels[rows]


def evaluate(
    scores: np.ndarray,
    hard_scores: np.ndarray,
    thresholds: np.ndarray,
    binary: np.ndarray,
    labels: np.ndarray,
    ids: list[str],
) -> dict[str, Any]:
    """Binary and per-category metrics of one model on one fold."""
    only_violations = np.nanmin(binary) == 1
    if only_violations:  # rank against the hard safe texts
        y = np.r_[binary, np.zeros(len(hard_scores))]
        s = np.vstack([scores, hard_scores])
    else:
        y, s = binary, scores
    flagged = np.asarray((s >= thresholds).any(axis=1))
    m = binary_metrics(y, any_category(s), 0.5, flagged=flagged)
    per_category = {}
    for j, c in enumerate(ids):
        yj = labels[:, j]
        if np.nansum(yj == 1) < 5:
            continue
        if only_violations:
            yj = np.r_[yj, np.zeros(len(hard_scores))]
        cm = binary_metrics(yj, s[:, j], float(thresholds[j]))
        per_category[c] = {"positives": cm.positives, "auprc": cm.auprc, "recall": cm.recall}
    return {
        "auprc": m.auprc,
        "f1": m.f1,
        "recall": m.recall,
        "precision": m.precision,
        "rows": m.n,
        "positives": m.positives,
        "hard_safe_flagged": float((hard_scores >= thresholds).any(axis=1).mean()),
        "ranked_against_hard_safe": bool(only_violations),
        "per_category": per_category,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipe", default="recipes/default.yaml")
    parser.add_argument("--frozen", default="recipes/frozen-head.yaml")
    parser.add_argument("--root", default=None)
    parser.add_argument("--folds", default="", help="comma-separated sources (default: all)")
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps per fold")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--max-test", type=int, default=2000)
    parser.add_argument(
        "--encoder",
        default=None,
        help="encoder of both recipes instead of theirs (e.g. all-mpnet-base-v2, from its PyPI "
        "parts), to compare encoders on the same folds",
    )
    parser.add_argument(
        "--max-per-source",
        type=int,
        default=None,
        help="train each fold on at most this many rows of each source (a random sample, the "
        "same for every fold and encoder): a cheaper comparison, not the shipped model's numbers",
    )
    parser.add_argument(
        "--distil-layers",
        type=int,
        default=0,
        help="also distil each fold's fine-tuned encoder into one of this many layers (its own "
        "layers, evenly spaced) and score that student with the teacher's head (0: no)",
    )
    parser.add_argument("--distil-steps", type=int, default=600, help="distillation steps")
    parser.add_argument(
        "--distil-logits",
        action="store_true",
        help="distil the head's outputs too (soft sigmoid targets), not only the embeddings",
    )
    parser.add_argument(
        "--distil-texts",
        type=int,
        default=0,
        help="unlabelled texts added to the distillation: rows of the fold's training sources "
        "outside the --max-per-source sample (never the left-out source's)",
    )
    parser.add_argument("--cache", default="bastion-data/cache/embeddings.sqlite")
    parser.add_argument("--out", default="bench/out/generalisation.json")
    parser.add_argument(
        "--save-scores",
        default=None,
        help="folder for one .npz per fold and model: calibration-split, left-out and hard safe "
        "scores with their labels, to compare threshold choices without training again",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the folds that --out already holds from a run with the same recipes, steps "
        "and batch size, and run only the others (a fold takes up to half an hour)",
    )
    args = parser.parse_args()
    load_before = __import__("os").getloadavg()
    console = Console(width=160)
    tuned_recipe = Recipe.from_file(args.recipe)
    frozen_recipe = Recipe.from_file(args.frozen)
    assert tuned_recipe.classifier_finetune is not None, "--recipe must fine-tune the encoder"
    tuned_recipe.classifier_finetune.steps = args.steps
    if args.encoder:
        tuned_recipe.encoder = frozen_recipe.encoder = args.encoder
    if args.batch_size:
        tuned_recipe.classifier_finetune.batch_size = args.batch_size
    policy = recipe_policy(tuned_recipe)
    ids = policy.category_ids
    data = assemble(tuned_recipe, policy, args.root)
    if [s.name for s in assemble(frozen_recipe, policy, args.root).sources] != [
        s.name for s in data.sources
    ]:
        raise SystemExit("the two recipes must have the same sources, in the same order")
    hard = hard_safe_texts(tuned_recipe, args.root)
    base = load_encoder(tuned_recipe.encoder)
    cache = EmbeddingCache(args.cache, base)
    with Progress(console=console, transient=True) as progress:
        # only the rows some fold trains on (all of them without --max-per-source)
        sampled = _per_source_sample(data.source, args.max_per_source)
        used = np.flatnonzero(sampled)
        task = progress.add_task("embedding (frozen encoder)", total=len(used) + len(hard))
        X = np.zeros((len(data.texts), base.dim), dtype=np.float32)
        X[used] = cache.encode(
            [data.texts[i] for i in used], progress=lambda n: progress.advance(task, n)
        )
        X_hard = cache.encode(hard, progress=lambda n: progress.advance(task, n))
    Z = np.zeros((len(data.texts), len(ids)))
    Z[used] = zero_shot_probs(policy, base, X[used])
    names = [s.name for s in data.sources]
    wanted = [f for f in args.folds.split(",") if f]
    folds = [
        (k, n)
        for k, n in enumerate(names)
        if n in ADAPTERS and data.sources[k].positives and (not wanted or n in wanted)
    ]
    rows = _finished_folds(args) if args.resume else []
    done = {r["left_out"] for r in rows}
    if done:
        console.print(f"resuming: {', '.join(sorted(done))} already measured in {args.out}")
    for k, name in folds:
        if name in done:
            continue
        start = time.perf_counter()
        keep = np.flatnonzero((data.source != k) & sampled)
        fold = data.subset(keep)
        texts, binary, labels = test_set(name, data, k, args.root, policy, args.max_test)

        def scores_of(
            model: ModelArtifact, encoder: Encoder, emb: np.ndarray | None, t: list[str]
        ) -> np.ndarray:
            e = encoder.encode(t) if emb is None else emb
            zs = zero_shot_probs(policy, encoder, e) if model.zero_shot_share.any() else None
            return model.predict_proba(e, zs)

        frozen = fit_model(frozen_recipe, policy, fold, X[keep], Z[keep], base.name, base.dim)
        test_emb = cache.encode(texts)
        result: dict[str, Any] = {"left_out": name}
        thresholds = np.array([frozen.manifest.thresholds[c] for c in ids])
        test_scores = scores_of(frozen, base, test_emb, texts)
        hard_scores = scores_of(frozen, base, X_hard, hard)
        result["frozen"] = evaluate(test_scores, hard_scores, thresholds, binary, labels, ids)
        if args.save_scores:
            _, _, cal = training_split(frozen_recipe, policy, fold)
            cal_scores = frozen.predict_proba(X[keep][cal], Z[keep][cal])
            _save_scores(args.save_scores, name, "frozen", fold, cal, cal_scores, test_scores,
                         hard_scores, thresholds, binary, labels)  # fmt: skip
        with Progress(console=console, transient=True) as progress:
            bar = progress.add_task(f"fine-tuning without {name}", total=args.steps)

            def report(
                _stage: str, done: int, total: int, bar: Any = bar, p: Any = progress
            ) -> None:
                p.update(bar, completed=done, total=total)

            encoder, head, _ = tune_classifier(
                tuned_recipe, policy, fold, base.name, None, report, base_embeddings=X[keep]
            )
        tuned, X_cal, Z_cal = fit_tuned(tuned_recipe, policy, fold, encoder, head)
        thresholds = np.array([tuned.manifest.thresholds[c] for c in ids])
        test_scores = scores_of(tuned, encoder, None, texts)
        hard_scores = scores_of(tuned, encoder, None, hard)
        result["fine_tuned"] = evaluate(test_scores, hard_scores, thresholds, binary, labels, ids)
        if args.save_scores:
            _, _, cal = training_split(tuned_recipe, policy, fold)
            cal_scores = tuned.predict_proba(X_cal[cal], Z_cal[cal])
            _save_scores(args.save_scores, name, "fine_tuned", fold, cal, cal_scores, test_scores,
                         hard_scores, thresholds, binary, labels)  # fmt: skip
        if args.distil_layers:
            extra = _unlabelled(data.source, k, sampled, args.distil_texts)
            student = distil(
                encoder,
                args.distil_layers,
                fold.texts + [data.texts[i] for i in extra],
                args.distil_steps,
                console,
                head if args.distil_logits else None,
            )
            small, _, _ = fit_tuned(tuned_recipe, policy, fold, student, head)
            thresholds = np.array([small.manifest.thresholds[c] for c in ids])
            result["distilled"] = evaluate(
                scores_of(small, student, None, texts),
                scores_of(small, student, None, hard),
                thresholds, binary, labels, ids,
            )  # fmt: skip
        result["seconds"] = round(time.perf_counter() - start, 1)
        rows.append(result)
        f, t = result["frozen"], result["fine_tuned"]
        console.print(
            f"left out {name}: AUPRC frozen {format_metric(f['auprc'])} fine-tuned "
            f"{format_metric(t['auprc'])}; recall {format_metric(f['recall'])} -> "
            f"{format_metric(t['recall'])} ({result['seconds']} s)"
        )
        if "distilled" in result:
            d = result["distilled"]
            console.print(
                f"  distilled into {args.distil_layers} layers: AUPRC {format_metric(d['auprc'])},"
                f" recall {format_metric(d['recall'])}, hard safe flagged "
                f"{d['hard_safe_flagged']:.1%}"
            )
        _write(rows, args, load_before, len(hard), console, final=False)
    cache.close()
    _write(rows, args, load_before, len(hard), console, final=True)


def distil(
    teacher: TextEncoder,
    layers: int,
    texts: list[str],
    steps: int,
    console: Console,
    head: MultiLabelHead | None = None,
) -> TextEncoder:
    """A `layers`-layer copy of `teacher` (its own layers, evenly spaced, the first and last
    kept) trained to give the teacher's embeddings on `texts`: mean squared error between the
    two unit vectors, AdamW, batches of 32, `steps` steps. With `head` (frozen) the loss adds
    the cross-entropy between the head's sigmoid outputs on the student's embeddings and on the
    teacher's, so the student is pulled hardest where the head's decisions move. The teacher's
    head then reads the student's embeddings as they are."""
    import torch

    teacher_embeddings = teacher.encode(texts)
    target = torch.from_numpy(teacher_embeddings)
    soft = None
    if head is not None:
        soft = torch.sigmoid(torch.from_numpy(head.decision_function(teacher_embeddings)).float())
        for weight in head.model_.parameters():  # type: ignore[attr-defined]
            weight.requires_grad_(False)
    total = len(teacher._model[0].auto_model.encoder.layer)
    keep = [int(i) for i in np.unique(np.linspace(0, total - 1, layers).round())]
    student = cut(teacher, keep)
    model = student._model
    student.name = f"{teacher.name}-distilled-{len(keep)}"
    for weight in model.parameters():  # the teacher's recipe may have frozen its lower layers
        weight.requires_grad_(True)
    torch.manual_seed(0)
    order = np.random.default_rng(0)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task(f"distilling into {len(keep)} layers", total=steps)
        for _ in range(steps):
            batch = order.choice(len(texts), size=min(32, len(texts)), replace=False)
            features = model.tokenize([texts[i] for i in batch])
            out = model(dict(features))["sentence_embedding"]
            loss = torch.nn.functional.mse_loss(out, target[batch]) * out.shape[1]
            if head is not None and soft is not None:
                logits = head.model_(out)  # type: ignore[attr-defined]
                loss = loss + torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, soft[batch]
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            progress.advance(bar)
    model.eval()
    return student


def _unlabelled(source: np.ndarray, left_out: int, sampled: np.ndarray, n: int) -> np.ndarray:
    """Up to `n` random rows of the training sources that the per-source sample left out."""
    pool = np.flatnonzero((source != left_out) & ~sampled)
    if n <= 0 or len(pool) == 0:
        return pool[:0]
    return np.sort(np.random.default_rng(1).choice(pool, min(n, len(pool)), replace=False))


def _per_source_sample(source: np.ndarray, cap: int | None) -> np.ndarray:
    """A mask keeping at most `cap` random rows of each source (all rows without a cap)."""
    keep = np.ones(len(source), dtype=bool)
    if cap is None:
        return keep
    rng = np.random.default_rng(0)
    for k in np.unique(source):
        rows = np.flatnonzero(source == k)
        if len(rows) > cap:
            keep[rng.choice(rows, len(rows) - cap, replace=False)] = False
    return keep


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a run's numbers depend on: in its JSON, and what `--resume` must find the same."""
    return {
        "recipe": args.recipe,
        "frozen": args.frozen,
        "steps_per_fold": args.steps,
        "batch_size": args.batch_size,
        "max_test": args.max_test,
        "encoder": args.encoder,
        "max_per_source": args.max_per_source,
        "distil_layers": args.distil_layers,
        "distil_steps": args.distil_steps if args.distil_layers else None,
        "distil_logits": bool(args.distil_logits) if args.distil_layers else None,
        "distil_texts": args.distil_texts if args.distil_layers else None,
    }


def _finished_folds(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The fold rows of an earlier run into `--out` with the same settings (none otherwise)."""
    path = Path(args.out)
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text(encoding="utf-8"))
    meta = earlier.get("meta", {})
    same = all(meta.get(k) == v for k, v in _settings(args).items())
    if not same:
        raise SystemExit(
            f"--resume: {path} was written with other settings ({meta.get('recipe')}, "
            f"{meta.get('steps_per_fold')} steps, batch {meta.get('batch_size')}, max test "
            f"{meta.get('max_test')}); move it away or run without --resume"
        )
    rows: list[dict[str, Any]] = earlier.get("rows", [])
    return rows


def _save_scores(
    folder: str,
    fold_name: str,
    model: str,
    data: TrainingData,
    cal: np.ndarray,
    cal_scores: np.ndarray,
    test_scores: np.ndarray,
    hard_scores: np.ndarray,
    thresholds: np.ndarray,
    binary: np.ndarray,
    labels: np.ndarray,
) -> None:
    """One fold's scores, so another threshold rule can be tried on them in seconds."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / f"{fold_name}.{model}.npz",
        cal_scores=cal_scores, cal_labels=data.labels[cal], cal_binary=data.binary()[cal],
        cal_source=data.source[cal], source_names=np.array([s.name for s in data.sources]),
        test_scores=test_scores, test_binary=binary, test_labels=labels,
        hard_scores=hard_scores, thresholds=thresholds,
    )  # fmt: skip


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _write(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    load_before: tuple[float, float, float],
    n_hard: int,
    console: Console,
    *,
    final: bool,
) -> None:
    """The table so far (each fold takes minutes: a stop keeps what was measured)."""
    meta = {**run_meta(load_before), **_settings(args), "hard_safe_rows": n_hard}
    header = (
        "| left out | rows (pos.) | AUPRC frozen | AUPRC fine-tuned | F1 frozen | F1 fine-tuned "
        "| recall frozen | recall fine-tuned | hard safe flagged frozen | hard safe flagged fine-tuned |"
    )
    lines = [
        f"Date {meta['date']}; {meta['machine']}; recipes {args.recipe} (fine-tuned, "
        f"{args.steps} steps of {args.batch_size or 'the recipe'}'s batch per fold) and "
        f"{args.frozen}; encoder {args.encoder or 'as in the recipes'}; training rows per source "
        f"{args.max_per_source or 'all'}; {n_hard} held-out hard safe texts.",
        "",
        header,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        f, t = r["frozen"], r["fine_tuned"]
        mark = "¹" if f["ranked_against_hard_safe"] else ""
        lines.append(
            f"| {r['left_out']}{mark} | {t['rows']} ({t['positives']}) | {format_metric(f['auprc'])} | "
            f"**{format_metric(t['auprc'])}** | {format_metric(f['f1'])} | {format_metric(t['f1'])} | "
            f"{format_metric(f['recall'])} | {format_metric(t['recall'])} | "
            f"{pct(f['hard_safe_flagged'])} | {pct(t['hard_safe_flagged'])} |"
        )
    if rows:
        fa = np.array([r["frozen"]["auprc"] or np.nan for r in rows])
        ta = np.array([r["fine_tuned"]["auprc"] or np.nan for r in rows])
        wins = int(np.nansum(ta > fa))
        lines += [
            "",
            f"Fine-tuned beats frozen on {wins} of {len(rows)} folds; mean AUPRC "
            f"{np.nanmean(fa):.3f} -> {np.nanmean(ta):.3f} ({np.nanmean(ta - fa):+.3f}).",
            "",
            "¹ only violations: ranked against the held-out hard safe texts.",
            "",
            "Per category (left-out sets that name categories; AUPRC frozen -> fine-tuned, recall "
            "at the fold's thresholds frozen -> fine-tuned):",
            "",
            "| left out | category | positives | AUPRC | recall |",
            "|---|---|---:|---:|---:|",
        ]
        for r in rows:
            for c, t in r["fine_tuned"]["per_category"].items():
                f = r["frozen"]["per_category"].get(c, {})
                lines.append(
                    f"| {r['left_out']} | {c} | {t['positives']} | {format_metric(f.get('auprc'))} -> "
                    f"{format_metric(t['auprc'])} | {format_metric(f.get('recall'))} -> "
                    f"{format_metric(t['recall'])} |"
                )
    json_path, md = write_result({"meta": meta, "rows": rows}, args.out, "\n".join(lines) + "\n")
    if final:
        table = Table(
            "left out", "AUPRC frozen", "AUPRC fine-tuned", "recall frozen", "recall fine-tuned",
            "hard safe flagged (fine-tuned)", title="Leave-one-dataset-out",
        )  # fmt: skip
        for r in rows:
            f, t = r["frozen"], r["fine_tuned"]
            table.add_row(
                r["left_out"], format_metric(f["auprc"]), format_metric(t["auprc"]),
                format_metric(f["recall"]), format_metric(t["recall"]), pct(t["hard_safe_flagged"]),
            )  # fmt: skip
        console.print(table)
        console.print(f"wrote {json_path} and {md}")


if __name__ == "__main__":
    main()
