"""`ssd export`: a model as one ONNX file, for scoring where there is no Python torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.cli.app import app, handle_errors
from ssd_cli.cli.options import ForceOpt
from ssd_cli.cli.render import console, safe
from ssd_cli.errors import UsageError
from ssd_cli.io.files import check_writable


@app.command()
@handle_errors
def export(
    model: Annotated[Path, typer.Argument(help="Model file written by `ssd train`.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The ONNX file to write (.onnx). Default: MODEL with the suffix .onnx.")] = None,
    force: ForceOpt = False,
) -> None:
    """Export a model to ONNX: one graph from uint8 images at the model's input size to the scores.

    The graph holds the stored preprocessing, phi and the distance to c (patch-level models: also
    the map of patch scores), with a free batch size; its metadata holds the threshold and its
    rule, input size, channels, resize policy and patch grid. A tiled model's graph takes tiles and
    gives their patch scores; its metadata says how photos are cut into tiles, and an image's score
    is the mean of the top_k largest patch scores of all its tiles. Before writing, onnxruntime must
    score probe images as `ssd score` does (within 1e-5), else nothing is written (exit 4). Needs
    the export extra: pip install 'ssd-cli\\[export]'. docs/deploy.md scores a folder with it.
    """
    from ssd_cli.api import Detector
    from ssd_cli.io.onnx_export import require_packages

    require_packages()  # before any work: the one thing most likely missing
    target = out if out is not None else model.with_suffix(".onnx")
    if target.suffix.lower() != ".onnx":
        raise UsageError(f"--out must end in .onnx, got '{target.name}'")
    check_writable(target, force)
    meta = Detector.load(model, device="cpu").export(target, force=force)
    console.print(f"wrote [bold]{safe(str(target))}[/]: {_interface(meta)}; threshold {float(meta['threshold']):.6g}")


def _interface(meta: dict[str, str]) -> str:
    """What the graph takes and gives, from its metadata: images fitted by the resize policy, or a
    tiled model's tiles, whose image score is left to the caller."""
    size, channels, outputs = meta["input_size"], meta["channels"], meta["outputs"].replace(",", ", ")
    if "tile" not in meta:
        return f"uint8 images N x {channels} x {size} x {size} (resize {meta['resize']}) -> {outputs}"
    scale, top_k = json.loads(meta["tile"])["scale"], json.loads(meta["patch"])["top_k"]
    return (f"uint8 tiles N x {channels} x {size} x {size} of photos scaled by {scale:g} -> {outputs} "
            f"(an image's score: the mean of the {top_k} largest over all its tiles)")  # fmt: skip
