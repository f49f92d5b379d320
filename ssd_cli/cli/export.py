"""`ssd export`: a model as one ONNX file, for scoring where there is no Python torch."""

from __future__ import annotations

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
    rule, input size, channels, resize policy and patch grid. Before writing, onnxruntime must
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
    size, channels = meta["input_size"], meta["channels"]
    outputs = meta["outputs"].replace(",", ", ")
    console.print(f"wrote [bold]{safe(str(target))}[/]: uint8 images N x {channels} x {size} x {size} (resize {meta['resize']}) -> {outputs}; "
                  f"threshold {float(meta['threshold']):.6g}")  # fmt: skip
