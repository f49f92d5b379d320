"""`ssd export`: a model as one ONNX graph, uint8 images to scores, checked before it is written.

Where a model is deployed there is rarely torch, and a second preprocessing path written there
drifts from training's: exported models that score differently are the common complaint. So the
graph holds all of scoring after decoding: the stored preprocessing (scale or GCN with its
statistics), phi, the distance to c and, for patch-level models, the grid of patches and the map
(image score = the mean of its top_k largest patch scores). It is traced from the very modules `ssd score` runs, and before a byte
is written onnxruntime runs it beside ssd's own scorer on probe images at two batch sizes: a graph
that does not give the same scores (within RTOL) is refused, never written. What a deployment
still does itself, decoding and fitting each image to the square input, is named in the file's
metadata (docs/deploy.md has a script that does it exactly as ssd does).

A tiled model's graph takes tiles, not photos, and gives their patch scores only: a photo has as
many tiles as its size gives (any size is scored, so no fixed input could hold them), and ssd
scores a large photo's tiles a chunk at a time to bound memory, which one graph per photo could
not. Cutting the scaled photo into tiles (the `tile` metadata: TileSpec's rule) and the image
score, the mean of the top_k largest patch scores over all its tiles (TiledGrids.score), stay
outside, a few lines of numpy in docs/deploy.md's script; the stitched map is core/tiles.stitch.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ssd_cli import __version__
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.patches import grid_patches, image_scores
from ssd_cli.core.scoring import Scorer
from ssd_cli.errors import ModelFileError, UsageError
from ssd_cli.io.files import write_atomic
from ssd_cli.core.model import SavedModel
from ssd_cli.io.modelfile import FORMAT_VERSION, MODEL_FORMAT

if TYPE_CHECKING:  # imported when exporting: the export extra is optional
    import onnx

EXPORT_FORMAT = "ssd-onnx"
EXPORT_FORMAT_VERSION = 2  # of the graph's interface: its input, outputs and metadata keys (2: tiled models)
OPSET = 18  # ONNX opset: onnxruntime >= 1.14 and most other runtimes of 2023 on run it
INPUT = "images"
SCORE, PATCH_SCORES = "score", "patch_scores"  # the outputs
RTOL = 1e-5  # the graph's scores and maps must be this close to ssd's own, relatively
PACKAGES = ("onnx", "onnxscript", "onnxruntime")  # the `export` extra: the exporter, its translator, the check


def require_packages() -> None:
    """A usage error naming the extra to install when the exporter's packages are missing."""
    missing = [name for name in PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"exporting to ONNX needs {', '.join(missing)}: install the export extra, pip install 'ssd-cli[export]'")


class ScoringGraph(nn.Module):
    """ssd's scoring after decoding, as one module to trace: uint8 (N, C, S, S) -> scores (N,), and
    for a patch-level model also the (N, G, G) patch scores; for a tiled model, N tiles -> their
    patch scores alone. The same Preprocessor, Encoder, patch grid and distance as core/scoring.py,
    without its chunking (a runtime batches as it likes)."""

    def __init__(self, saved: SavedModel) -> None:
        super().__init__()
        self.preprocessor, self.patch, self.tiled = saved.preprocessor, saved.patch, saved.tile is not None
        self.encoder = saved.encoder("cpu")
        self.register_buffer("c", saved.c.to("cpu", torch.float32))

    def forward(self, images: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocessor(images)
        if self.patch is None:
            return squared_distances(self.encoder(x), self.c).sqrt()
        g = self.patch.grid
        # view(-1, ...), not view(len(x), ...): len() would fix the batch size in the traced graph
        maps = squared_distances(self.encoder(grid_patches(x, self.patch).flatten(0, 1)), self.c).sqrt().view(-1, g, g)
        return maps if self.tiled else (image_scores(maps, self.patch.top_k), maps)


def metadata(saved: SavedModel) -> dict[str, str]:
    """What the ONNX file says about feeding it and reading its scores (docs/deploy.md lists the keys)."""
    patch = {} if saved.patch is None else {"patch": json.dumps(saved.patch.to_dict())}
    # a tiled model's tiles keep the photo's shape: no resize policy applies to them
    fitting = {"resize": saved.resize.value} if saved.tile is None else {"tile": json.dumps(saved.tile.to_dict())}
    return {
        "format": EXPORT_FORMAT,
        "format_version": str(EXPORT_FORMAT_VERSION),
        "ssd_version": __version__,
        "model_format": MODEL_FORMAT,
        "model_format_version": str(FORMAT_VERSION),
        "trained_with": saved.tool_version,
        "network": saved.spec.name,
        "input": INPUT,
        "input_size": str(saved.input_size),
        "channels": str(saved.spec.channels),
        **fitting,
        **patch,
        "outputs": ",".join(_outputs(saved)),
        "preprocessing": saved.preprocessor.to_json(),
        "threshold": repr(saved.threshold),
        "threshold_rule": saved.threshold_rule,
    }


def export_onnx(saved: SavedModel, path: Path, *, force: bool = False) -> dict[str, str]:
    """Write the model's scoring graph to `path` (atomically, never over a file unless force) once
    onnxruntime has shown it scores as ssd does; returns the metadata written into it."""
    require_packages()
    import onnx

    proto = _trace(saved)
    meta = metadata(saved)
    onnx.helper.set_model_props(proto, meta)
    proto.producer_name, proto.producer_version = "ssd", __version__
    fed = "images" if saved.tile is None else f"tiles of photos scaled by {saved.tile.scale:g}"
    proto.doc_string = f"ssd {saved.spec.name} model: uint8 {fed} (N, {saved.spec.channels}, {saved.input_size}, {saved.input_size}) -> {', '.join(_outputs(saved))}"
    try:
        onnx.checker.check_model(proto, full_check=True)  # valid for every runtime, not only onnxruntime
    except onnx.checker.ValidationError as exc:
        raise ModelFileError(f"cannot export this model to ONNX: the graph is not valid ONNX ({_first_line(exc)}); nothing was written") from None
    data = proto.SerializeToString()
    _check(data, saved)
    write_atomic(path, data, force)
    return meta


def _outputs(saved: SavedModel) -> tuple[str, ...]:
    """score for whole images, patch_scores for tiles (their image is scored outside), both for patch-level models."""
    if saved.patch is None:
        return (SCORE,)
    return (PATCH_SCORES,) if saved.tile is not None else (SCORE, PATCH_SCORES)


def _probe_images(saved: SavedModel, n: int) -> torch.Tensor:
    """n fixed uint8 images (tiles, for a tiled model) for the check: a constant one (GCN's zero-contrast case) and noise."""
    size, channels = saved.input_size, saved.spec.channels
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(n))
    images[0] = 128
    return images


def _trace(saved: SavedModel) -> onnx.ModelProto:
    """The ONNX ModelProto of the scoring graph, its batch dimension free. torch.export is called
    first and alone: it fails where the batch size would be fixed, where torch.onnx.export
    silently falls back to a fixed batch."""
    graph = ScoringGraph(saved).eval()
    example = _probe_images(saved, 2)
    batch = torch.export.Dim("batch", min=1)
    try:
        with torch.no_grad():
            program = torch.export.export(graph, (example,), dynamic_shapes={INPUT: {0: batch}})
            exported = torch.onnx.export(
                program, (example,), input_names=[INPUT], output_names=list(_outputs(saved)), opset_version=OPSET, dynamo=True, verbose=False
            )
    except (torch.onnx.errors.OnnxExporterError, torch._dynamo.exc.UserError) as exc:  # UserError: what torch.export raises
        raise ModelFileError(f"cannot export this model to ONNX: {_first_line(exc)}") from None
    return exported.model_proto


def _check(data: bytes, saved: SavedModel) -> None:
    """onnxruntime must score probe images as ssd's Scorer does, at two batch sizes; else refuse."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    failures = (ort_state.Fail, ort_state.InvalidArgument, ort_state.InvalidGraph, ort_state.RuntimeException, ort_state.NotImplemented)
    scorer = Scorer(saved, torch.device("cpu"))
    expected = {SCORE: scorer.score, PATCH_SCORES: scorer.score_maps}
    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        for n in (3, 1):
            images = _probe_images(saved, n)
            got = session.run(None, {INPUT: images.numpy()})
            for name, g in zip(_outputs(saved), got):
                difference = _relative_difference(g, expected[name](images).numpy())
                if not difference <= RTOL:
                    raise ModelFileError(
                        f"cannot export this model faithfully: onnxruntime's {name} differs from ssd's by {difference:.2g} (relative) "
                        f"on {n} probe image(s), more than the {RTOL:g} allowed; nothing was written"
                    )
    except failures as exc:
        raise ModelFileError(f"cannot export this model faithfully: onnxruntime cannot run the graph ({_first_line(exc)}); nothing was written") from None


def _relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """The largest |got - want| / |want|, inf if the shapes differ. Values far below the largest
    (1e-3 of it) count relative to that: a map cell near 0 next to one of 5 cannot flip a flag."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return float("inf")
    floor = max(1e-3 * float(np.abs(want).max()), np.finfo(np.float32).tiny)
    return float((np.abs(got - want) / np.maximum(np.abs(want), floor)).max())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]
