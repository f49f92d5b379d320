"""`ssd score` and `ssd info`: score images with a model, and show what a model file holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.errors import UsageError
from ssd_cli.io.files import check_writable
from ssd_cli.cli.app import app, handle_errors
from ssd_cli.cli.options import DeviceOpt, ForceOpt
from ssd_cli.cli.render import console, count_progress, info_table, ranked_table, safe, warn, warn_skipped

def check_counts(**counts: int) -> None:
    for name, value in counts.items():
        if value < 0:
            raise UsageError(f"--{name} must be 0 or more, got {value}")


GalleryOpt = Annotated[int, typer.Option("--gallery", help="With --report: thumbnails of this many of the most anomalous images.")]


@app.command()
@handle_errors
def score(
    model: Annotated[Path, typer.Argument(help="Model file written by `ssd train`.")],
    paths: Annotated[list[Path], typer.Argument(help="Image files or folders (read recursively).")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write every score to this file: .csv (plain: path, score, normalised_score, anomalous, rank; most anomalous first) or .json (the same rows plus the model, threshold and skipped files).")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write a self-contained HTML report: counts, threshold, histogram of the scores, thumbnails of the most anomalous and the most normal images.")] = None,
    threshold: Annotated[Optional[float], typer.Option(help="Flag images with a score above this value (default: the model's stored threshold).")] = None,
    contamination: Annotated[Optional[float], typer.Option(help="Flag this fraction of the scored images, the highest scores (e.g. 0.05; P x N rounded up), instead of a threshold.")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", help="Flag the K highest-scoring images, instead of a threshold (equal scores at the cut are split by rank).")] = None,
    copy_to: Annotated[Optional[Path], typer.Option("--copy-to", help="Copy the flagged files into this folder (new or empty), named RANK-NAME so names stay unique and sort by score.")] = None,
    link_to: Annotated[Optional[Path], typer.Option("--link-to", help="As --copy-to, with symbolic links instead of copies.")] = None,
    maps: Annotated[Optional[Path], typer.Option("--maps", help="Patch-level models: write an anomaly heatmap of every scored image into this folder (new or empty), a PNG at the image's own size named RANK-STEM.png (0001-img.png for img.jpg) so names stay unique; colours are score / threshold from 0 to 2: blue below the threshold, yellow to red above it.")] = None,
    top: Annotated[int, typer.Option(help="Rows of the ranked table to print (0 = all).")] = 20,
    gallery: GalleryOpt = 48,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images decoded per batch (memory is bounded by about two batches); a tiled model decodes and scores one image at a time.")] = 512,
    workers: Annotated[Optional[int], typer.Option(help="Image decoding threads (default: half the cores, at most 8; the rest run the network).")] = None,
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Score images: the distance ||phi(x) - c|| to the hypersphere center; higher is more anomalous.

    The normalised score is score / threshold: above 1 is anomalous.
    """
    from ssd_cli.api import Detector, no_maps
    from ssd_cli.io.info import facts
    from ssd_cli.io.results import check_folder_target, export_flagged, write_maps
    from ssd_cli.thresholds import ThresholdRule
    from ssd_cli.core.ranks import ranks

    rule = ThresholdRule(threshold, contamination, top_k)  # bad combinations fail before any work
    check_counts(top=top, gallery=gallery)
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"--output must end in .csv or .json, got '{output.name}'")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--report must end in .html, got '{report.name}'")
    if copy_to is not None and link_to is not None:
        raise UsageError("give --copy-to or --link-to, not both")
    folder = copy_to or link_to
    if maps is not None and folder is not None and maps.resolve() == folder.resolve():
        raise UsageError(f"--maps and --{'copy' if copy_to else 'link'}-to must be different folders")
    for path in (output, report):
        if path is not None:
            check_writable(path, force)
    for target in (folder, maps):
        if target is not None:
            check_folder_target(target, force)
    detector = Detector.load(model, device=device)
    if maps is not None and not detector.has_maps:
        raise no_maps("--maps")
    with count_progress("scoring") as on_progress:
        scores = detector.score(paths, threshold=rule.value, contamination=rule.contamination, top_k=rule.top_k,
                                batch_size=batch_size, workers=workers, on_progress=on_progress)  # fmt: skip
    if not ranks().is_main:  # under torchrun, rank 0 writes and prints for all
        return
    warn_skipped(scores.skipped, "score")
    console.print(ranked_table(scores, top))
    about = facts(detector.model_, model)
    for path in (output, report):
        if path is not None:
            scores.write(path, force=force, facts=about, gallery=gallery)
            console.print(f"wrote [bold]{safe(str(path))}[/]")
    if folder is not None:
        written = export_flagged(scores, folder, link=link_to is not None)
        console.print(f"{'linked' if link_to else 'copied'} {len(written)} flagged file(s) into [bold]{safe(str(folder))}[/]")
        if scores.n_flagged > len(written):
            warn(f"{scores.n_flagged - len(written)} flagged image(s) have no file to {'link' if link_to else 'copy'}")
    if maps is not None:
        with count_progress("writing maps") as on_progress:
            drawn = write_maps(scores, maps, force=force, on_progress=on_progress)
        console.print(f"wrote {len(drawn)} anomaly map(s) into [bold]{safe(str(maps))}[/]")
        if len(scores) > len(drawn):
            warn(f"{len(scores) - len(drawn)} scored image(s) could no longer be read, so they have no map")


@app.command()
@handle_errors
def info(
    model: Annotated[Path, typer.Argument(help="Model file from `ssd train` or autoencoder file from `ssd pretrain`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full description as JSON (for scripts).")] = False,
) -> None:
    """Show what a model or autoencoder file holds: network, input, preprocessing, objective, threshold, training record."""
    from ssd_cli.io.info import describe_file

    described = describe_file(model)
    if as_json:
        typer.echo(json.dumps(described, indent=1))
    else:
        console.print(info_table(described))
