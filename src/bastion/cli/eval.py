"""`bastion eval`: score a labelled dataset and write metrics.json plus an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bastion.cli.output import (
    ExamplesOption,
    ModelOption,
    console,
    err_console,
    policy_with_examples,
)
from bastion.errors import BastionError

if TYPE_CHECKING:
    import numpy as np

    from bastion.eval.labels import LabelMap
    from bastion.eval.metrics import BinaryMetrics
    from bastion.moderator import Moderator


def eval_command(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="A shared dataset by name (see --list)."),
    ] = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Your own JSONL or CSV file instead of --dataset.")
    ] = None,
    text_col: Annotated[str, typer.Option(help="Text column of --data.")] = "text",
    label_col: Annotated[
        str | None, typer.Option(help="Binary label column of --data (0/1, safe/unsafe, ...).")
    ] = "label",
    category_cols: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated per-category label columns of --data (instead of --label-col)."
        ),
    ] = None,
    label_map: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON: dataset label or column -> policy category id(s)."),
    ] = None,
    policy: Annotated[
        str, typer.Option("--policy", "-p", help="Built-in pack or policy YAML.")
    ] = "openai",
    model: ModelOption = "default",
    examples: ExamplesOption = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder directory; default bundled.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Report directory.")] = Path(
        "reports/eval"
    ),
    data_root: Annotated[
        Path | None,
        typer.Option(help="Folder of the shared datasets (default ../shared/datasets)."),
    ] = None,
    negatives: Annotated[
        str | None,
        typer.Option(
            help="For all-positive sets: add the safe rows of this dataset ('none' to skip)."
        ),
    ] = "wildguard",
    limit: Annotated[int | None, typer.Option(help="Stratified sample of at most N rows.")] = None,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    list_datasets: Annotated[
        bool, typer.Option("--list", help="List the shared datasets and exit.")
    ] = False,
) -> None:
    """Evaluate a policy's moderation on labelled data: AUPRC, ROC-AUC, F1, recall at 5% FPR, ECE.

    Examples:

      bastion eval --dataset davidson --limit 2000 --out reports/davidson

      bastion eval --data mine.csv --text-col body --label-col is_bad --out reports/mine

      bastion eval --data mine.jsonl --category-cols hate,spam --label-map map.yaml

    Writes OUT/metrics.json and OUT/index.html with PR curves and a reliability diagram.
    """
    from bastion.eval import datasets as ds
    from bastion.eval.labels import LabelMap
    from bastion.eval.report import write_report
    from bastion.eval.runner import evaluate
    from bastion.moderator import Moderator

    if list_datasets:
        _list()
        return
    if (dataset is None) == (data is None):
        raise BastionError("give either --dataset NAME or --data FILE (see --list for names)")
    moderator = Moderator(policy_with_examples(policy, examples), model=model, encoder=encoder)
    pol = moderator.policy
    y_categories = None
    lmap = LabelMap.from_file(label_map) if label_map else None
    if dataset is not None:
        labelled = ds.load_dataset(dataset, root=data_root, limit=limit, seed=seed)
        if lmap is None:
            lmap = ds.label_map_for(dataset, pol.policy.id)
        if labelled.all_positive and negatives and negatives != "none":
            labelled = labelled.with_negatives(
                ds.load_dataset(negatives, root=data_root, limit=limit, seed=seed)
            )
            err_console.print(
                f"{dataset} has only positives; added the safe rows of {negatives} as negatives"
            )
    else:
        assert data is not None
        cols = [c.strip() for c in category_cols.split(",")] if category_cols else None
        labelled, matrix, names = ds.load_file(
            data, text_col=text_col, label_col=None if cols else label_col, category_cols=cols
        )
        labelled = labelled.sample(limit, seed)
        if matrix is not None:
            y_categories = _columns_to_categories(matrix, names, lmap, moderator)
            lmap = None
    with Progress(
        TextColumn(f"[bold]eval {labelled.name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
    ) as progress:
        task = progress.add_task("eval", total=len(labelled))
        run = evaluate(
            moderator, labelled, lmap, y_categories, progress=lambda n: progress.advance(task, n)
        )
    html_path = write_report(run, out)
    _print(run.result.binary, run.result.per_category, labelled.name)
    console.print(f"report: {html_path}", highlight=False)


def _columns_to_categories(
    matrix: np.ndarray, names: list[str], lmap: LabelMap | None, moderator: Moderator
) -> np.ndarray:
    import numpy as np

    from bastion.eval.labels import LabelMap

    ids = moderator.policy.category_ids
    mapping = lmap.mapping if lmap else {n: [n] for n in names}
    check = LabelMap({n: mapping.get(n, []) for n in names})
    unknown = [n for n in names if n not in mapping]
    if unknown:
        raise BastionError(
            f"category columns {unknown} are neither policy category ids nor in the label map"
        )
    check.check(moderator.policy, source="--category-cols")
    m = np.asarray(matrix, dtype=np.float64)
    y = np.full((m.shape[0], len(ids)), np.nan)
    for k, name in enumerate(names):
        for cat in check.mapping[name]:
            j = ids.index(cat)
            y[:, j] = np.fmax(y[:, j], m[:, k])
    return y


def _print(binary: BinaryMetrics, per_category: dict[str, BinaryMetrics], name: str) -> None:
    from bastion.eval.metrics import format_metric

    table = Table(
        "scope", "n", "pos", "AUPRC", "ROC-AUC", "P", "R", "F1", "R@5%FPR", "ECE", title=name
    )

    f = format_metric
    for scope, m in [("any category", binary), *per_category.items()]:
        table.add_row(
            scope, str(m.n), str(m.positives), f(m.auprc), f(m.roc_auc), f(m.precision),
            f(m.recall), f(m.f1), f(m.recall_at_5pct_fpr), f(m.ece),
        )  # fmt: skip
    console.print(table)


def _list() -> None:
    from bastion.eval.datasets import ADAPTERS

    table = Table("name", "use", "licence", "kind", "labels")
    for a in ADAPTERS.values():
        table.add_row(a.name, a.use, a.licence, a.kind, a.description)
    console.print(table)
