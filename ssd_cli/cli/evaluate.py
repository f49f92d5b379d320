"""`ssd evaluate`: score labeled images and say how well the model separates them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.errors import UsageError
from ssd_cli.io.files import check_writable
from ssd_cli.cli.app import app, handle_errors
from ssd_cli.cli.options import DataRootOpt, DeviceOpt, DownloadOpt, ForceOpt
from ssd_cli.cli.render import console, count_progress, metrics_table, points_table, safe, warn, warn_skipped
from ssd_cli.cli.score import GalleryOpt, check_counts


@app.command()
@handle_errors
def evaluate(
    model: Annotated[Path, typer.Argument(help="Model file written by `ssd train`.")],
    normal: Annotated[Optional[list[Path]], typer.Option("--normal", help="Folder of normal test images; repeatable.")] = None,
    anomalous: Annotated[Optional[list[Path]], typer.Option("--anomalous", help="Folder of anomalous test images; repeatable.")] = None,
    labels: Annotated[Optional[Path], typer.Option("--labels", help="CSV of path,label (label: normal or 0, anomaly or 1); paths relative to the CSV.")] = None,
    dataset: Annotated[Optional[str], typer.Option("--dataset", help="Built-in dataset whose test split to use: mnist, fashion-mnist or cifar10 (torchvision checks that the training files are under --data-root too).")] = None,
    normal_class: Annotated[Optional[int], typer.Option("--normal-class", help="With --dataset: the class that is normal; all others are anomalous.")] = None,
    data_root: DataRootOpt = None,
    download: DownloadOpt = False,
    threshold: Annotated[Optional[float], typer.Option(help="Decision threshold for precision/recall/F1 (default: the model's).")] = None,
    recall: Annotated[float, typer.Option(help="Also report the highest threshold that reaches this recall (fraction of anomalies flagged).")] = 0.95,
    masks: Annotated[Optional[Path], typer.Option("--masks", help="Patch-level models, with --anomalous folders: a folder of ground-truth masks, one per anomalous image at its path relative to its --anomalous folder (any image extension, or NAME_mask.EXT; white = defect; the image's size). Adds pixel AUROC and AUPRO (FPR up to 0.3); anomalous images without a mask count at image level only.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the metrics, the thresholds to choose from and every score with its label to this JSON file.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report: metrics, ROC and precision-recall curves, score histogram by label, thresholds, the most anomalous images and the worst misses.")] = None,
    gallery: GalleryOpt = 48,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded per batch (memory is bounded by about two batches); a tiled model decodes and scores one image at a time.")] = 512,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Measure a model on labeled data: AUROC, AUPRC, precision/recall/F1 at the threshold, and the
    F1-best and target-recall thresholds to choose from; with --masks, pixel AUROC and AUPRO."""
    from ssd_cli.data import evalsets
    from ssd_cli.api import Detector, no_maps
    from ssd_cli.io.info import facts
    from ssd_cli.core.ranks import ranks

    check_counts(gallery=gallery)
    sources = sum([bool(normal or anomalous), labels is not None, dataset is not None])
    if sources != 1:
        raise UsageError("give exactly one of: --normal and --anomalous folders, --labels CSV, or --dataset with --normal-class")
    if masks is not None and (labels is not None or dataset is not None):
        raise UsageError("--masks goes with --normal and --anomalous folders, whose layout the masks folder mirrors")
    if output is not None and output.suffix.lower() != ".json":
        raise UsageError(f"--output must end in .json, got '{output.name}'")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report must end in .html, got '{report.name}'")
    for path in (output, report):
        if path is not None:
            check_writable(path, force)
    detector = Detector.load(model, device=device)
    if masks is not None and not detector.has_maps:
        raise no_maps("--masks")
    if dataset is not None:
        sets = evalsets.from_dataset(dataset, normal_class, detector.model_, data_root, download)
    elif labels is not None:
        sets = evalsets.from_labels_csv(labels)
    else:
        sets = evalsets.from_folders(normal or [], anomalous or [])
    for message in sets.warnings:
        warn(message)
    with count_progress("scoring") as on_progress:
        result = detector.evaluate(sets.normal, sets.anomalous, threshold=threshold, recall=recall, masks=masks, batch_size=batch_size, on_progress=on_progress)
    if not ranks().is_main:  # under torchrun, rank 0 writes and prints for all
        return
    warn_skipped(result.scores.skipped, "evaluate")
    console.print(metrics_table(result.metrics, safe(f"{model.name} on {sets.source}"), result.scores.threshold.rule, result.pixel))
    if result.pixel is not None and result.pixel.n_anomalous_without_mask:
        warn(f"{result.pixel.n_anomalous_without_mask} anomalous image(s) have no mask in {safe(str(masks))}: they count at image level only")
    console.print(points_table(result.points))
    about = [*facts(detector.model_, model), ("data", sets.source)]
    for path in (output, report):
        if path is not None:
            result.write(path, force=force, facts=about, gallery=gallery)
            console.print(f"wrote [bold]{safe(str(path))}[/]")
