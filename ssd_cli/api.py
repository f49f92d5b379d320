"""The Python API: `Detector`. `ssd score`, `ssd evaluate` and `ssd export` run through it; `ssd train`
builds the very TrainRequest `fit` builds, and both hand it to the engine.

    det = Detector(epochs=20).fit("normal/", anomalies="bad/")
    det.save("model.safetensors")
    det = Detector.load("model.safetensors")
    det.export("model.onnx")                 # one ONNX graph for onnxruntime (the `export` extra)
    scores = det.score("incoming/")          # Scores: path, score, normalised score, flag per image
    flags = det.predict(images)              # bool per image
    maps = det.score_maps("incoming/")       # patch-level models: an anomaly map per image

As scikit-learn's and PyOD's detectors: settings in the constructor (`get_params`, `set_params`),
`fit` taking the data only, `decision_function` (raw scores), `predict` (flags) and `threshold_`.
Inputs are folders, files, PIL images or arrays (`inputs.py`). Errors are `SsdError`s with a message
a person can act on; nothing here prints or exits.
"""

from __future__ import annotations

import tempfile
import warnings
from functools import partial
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ssd_cli.io import modelfile
from ssd_cli.core.ranks import ranks
from ssd_cli.core import distributed
from ssd_cli.core.config import AnomalyLoss, Objective, Preprocessing, Resize, ThresholdSource, Tiling, parse_kinds, parse_names
from ssd_cli.device import parse_device, resolve_device
from ssd_cli.engine import OptimOverrides, StageCallback, TrainPlan, TrainRequest, plan_training, run_training
from ssd_cli.errors import InputError, UsageError, python_names
from ssd_cli.data.images import Skipped, fit_image, fit_scaled, list_images, name_skipped
from ssd_cli.data.inputs import Images, segments, save_pngs
from ssd_cli.data.masks import find_masks, read_masks
from ssd_cli.data.score_files import score_files
from ssd_cli.io.heatmaps import MapGeometry
from ssd_cli.core.model import SavedModel
from ssd_cli.io.results import AnomalyMaps, Evaluation, Scores
from ssd_cli.core.maps import pixel_maps
from ssd_cli.core.patches import PatchSpec, image_scores
from ssd_cli.core.scoring import Grids, Scorer, join_grids
from ssd_cli.metrics import FPR_LIMIT, PixelMetrics, aupro, pixel_auroc
from ssd_cli.thresholds import ThresholdRule, operating_points, resolve

ProgressCallback = Callable[[int, int], None]  # (images done, images in all)

# Training settings of `Detector(...)` that go to one phase's optimiser; the others are TrainRequest's own fields.
_OPTIM = ("epochs", "lr", "lr_milestones", "weight_decay", "batch_size")
_ENUMS = {"resize": Resize, "preprocessing": Preprocessing, "objective": Objective, "anomaly_loss": AnomalyLoss, "threshold_from": ThresholdSource, "tiles": Tiling}
_REQUEST = ("arch", "decoder", "channels", "image_size", "resize", "preprocessing", "objective", "nu", "eta", "pretrained",
            "patch_size", "patch_stride", "patch_top_k", "patches_per_image", "tiles", "tile_scale", "tiles_per_image", "threshold_quantile", "seed", "cache",
            "synthetic", "synthetic_ratio", "augment", "anomaly_loss", "outlier_weight", "builtin_outliers", "whiten", "threshold_from")  # fmt: skip
FIT_SETTINGS = _REQUEST + _OPTIM + tuple(f"pretrain_{k}" for k in _OPTIM if k != "batch_size")
_WHERE_MASKS = "a mask has its image's path relative to the --anomalous folder, with any image extension"


def no_maps(what: str) -> UsageError:
    """The error for asking a whole-image model for maps (`what`: the option or method)."""
    return UsageError(
        f"{what}: this is a whole-image model, whose score has no location in the image, so it has no anomaly map; "
        "train a patch-level model (ssd train --patch-size) for maps"
    )


def _known(settings: Mapping[str, Any]) -> None:
    unknown = sorted(set(settings) - set(FIT_SETTINGS))
    if unknown:
        raise UsageError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(FIT_SETTINGS)}")


def _request(roles: tuple[list[Path], ...], device: str, settings: Mapping[str, Any]) -> TrainRequest:
    """The engine's typed TrainRequest, as `ssd train` builds it, from settings by name (None = the
    preset's / chosen from the data) and the (unlabeled, normals, anomalies, outliers) paths."""
    _known(settings)
    given = {k: v for k, v in settings.items() if v is not None}
    for name, enum in _ENUMS.items():
        if name in given:
            try:
                given[name] = enum(given[name])
            except ValueError:
                raise UsageError(f"{name} must be one of {', '.join(e.value for e in enum)}, got {given[name]!r}") from None
    for key in ("lr_milestones", "pretrain_lr_milestones"):
        if key in given:
            given[key] = tuple(given[key])
    train = OptimOverrides(**{k: given.pop(k, None) for k in _OPTIM})
    pretrain = OptimOverrides(**{k: given.pop(f"pretrain_{k}", None) for k in _OPTIM if k != "batch_size"}, batch_size=train.batch_size)
    for key in ("pretrained", "cache"):
        if key in given:
            given[key] = Path(given[key])
    for key, parse in (("synthetic", parse_kinds), ("augment", parse_names)):
        if isinstance(given.get(key), str):
            given[key] = parse(given[key])
        elif key in given:
            given[key] = tuple(given[key])
    unlabeled, normals, anomalies, outliers = (tuple(r) for r in roles)
    return TrainRequest(unlabeled=unlabeled, normals=normals, anomalies=anomalies, outliers=outliers, train=train, pretrain=pretrain, device=device, **given)


class Detector:
    """A Semi-Supervised Deep SVDD anomaly detector for images.

    `Detector(epochs=20).fit(...)` trains one, `Detector.load(path)` reads one that `ssd train` or
    `save` wrote. Scores are distances ||phi(x) - c|| to the hypersphere center: higher is more
    anomalous, above `threshold_` is anomalous.
    """

    @python_names
    def __init__(self, model: SavedModel | None = None, *, device: str = "auto", **settings: Any) -> None:
        """Training settings are `ssd train`'s options by name (epochs=20, arch="lenet-64", ...;
        `FIT_SETTINGS` lists them); what is not given is chosen from the images as the CLI does.
        An unknown name, or a value of the wrong kind, is a UsageError at once."""
        if model is not None and not isinstance(model, SavedModel):  # Detector("cpu") must not fail later
            hint = f"; the device is a keyword argument: Detector(device={model!r})" if isinstance(model, str) else ""
            raise TypeError(f"Detector(model) takes a SavedModel or None (Detector.load(path) reads a file), got {model!r}{hint}")
        self.device = "auto"
        self._settings: dict[str, Any] = {}
        self.set_params(device=device, **settings)
        self.model_ = model
        self.plan_: TrainPlan | None = None
        self.skipped_: list[Skipped] = []
        self._scorer: Scorer | None = None
        self._file: Path | None = None  # the file the model was read from or last saved to

    # --- settings (scikit-learn's convention) ---------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The device and every training setting by name, None where the default (the preset's, or
        the choice from the images) applies; `deep` is scikit-learn's, with nothing nested here."""
        return {"device": self.device, **{name: self._settings.get(name) for name in FIT_SETTINGS}}

    @python_names
    def set_params(self, **settings: Any) -> Detector:
        """Change settings (the constructor's, `device` too); checked as the constructor checks them. Returns self."""
        device = settings.pop("device", self.device)
        if not isinstance(device, (str, torch.device)):
            raise TypeError(f"Detector(device=...) takes 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        parse_device(device)
        merged = {**self._settings, **settings}
        _request(((),) * 4, device, merged)  # names and kinds of value now, not at the next fit
        self.device, self._settings = device, merged
        return self

    # --- training and files -------------------------------------------------------------------

    @python_names
    def fit(
        self,
        unlabeled: Images,
        normals: Images | None = None,
        anomalies: Images | None = None,
        outliers: Images | None = None,
        *,
        on_plan: Callable[[TrainPlan], None] | None = None,
        on_epoch: StageCallback | None = None,
        workers: int | None = None,
        **settings: Any,
    ) -> Detector:
        """Train on unlabeled images (mostly normal), optional labeled normals and anomalies, and
        optional outlier images (unrelated pictures used as anomalies, `outlier_weight`), with the
        settings the detector was made with.

        `on_plan` sees the plan before any long work, `on_epoch(stage, info)` every epoch.
        In-memory images are written to a temporary folder as PNG first, so they take the same path
        as files. Returns self. Settings given here (`fit(x, epochs=20)`, the API of ssd 0.4) still
        work, as `set_params` first, with a DeprecationWarning; ssd 0.5 takes them in the constructor only.
        """
        if settings:
            warnings.warn(
                f"Detector.fit({', '.join(f'{k}=...' for k in settings)}) is deprecated: give the settings to Detector(...) "
                "or set_params(...); fit will take the data only in ssd 0.5",
                DeprecationWarning,
                stacklevel=3,  # the caller of fit, past python_names
            )
            self.set_params(**settings)
        with tempfile.TemporaryDirectory(prefix="ssd-fit-") as tmp:
            named = (("unlabeled", unlabeled), ("normals", normals), ("anomalies", anomalies), ("outliers", outliers))
            roles = tuple(_as_paths(x, Path(tmp) / name) for name, x in named)
            request = _request(roles, self.device, self._settings)
            plan = plan_training(request)
            if on_plan is not None:
                on_plan(plan)
            outcome = run_training(plan, on_epoch=on_epoch, workers=workers)
        self.model_, self.plan_, self._scorer, self._file = outcome.model, plan, None, None
        self.skipped_ = [*plan.skipped, *outcome.skipped]  # what the listing left out, then what could not be decoded
        return self

    @python_names
    def save(self, path: str | Path, *, force: bool = False) -> None:
        """Write the model file (safetensors, no pickle; refuses to overwrite unless force)."""
        modelfile.save_model(Path(path), self._model(), force=force)
        self._file = Path(path)

    @classmethod
    @python_names
    def load(cls, path: str | Path, *, device: str = "auto") -> Detector:
        """A detector from a model file written by `ssd train` or `save`."""
        detector = cls(modelfile.load_model(Path(path)), device=device)
        detector._file = Path(path)
        return detector

    @property
    @python_names
    def threshold_(self) -> float:
        """The model's stored threshold: R (soft-boundary) or a quantile of the training scores."""
        return self._model().threshold

    @python_names
    def info(self) -> dict:
        """What `ssd info --json` shows: the file (None before `save`), network, input, objective,
        threshold, training record, |c|, R."""
        from ssd_cli.io.info import describe_model

        return {"file": None if self._file is None else str(self._file), **describe_model(self._model())}

    @python_names
    def export(self, path: str | Path, *, force: bool = False) -> dict[str, str]:
        """Write the model as one ONNX graph, for scoring where there is no torch: uint8 images
        (N, C, S, S) at the model's input -> `score` (and `patch_scores` for patch-level models);
        a tiled model's graph takes N tiles -> their `patch_scores`, an image scoring the mean of
        the top_k largest over all its tiles. onnxruntime checks it scores as this detector does
        before it is written (else a ModelFileError, and no file); needs the `export` extra. Returns
        the metadata stored in it: threshold and rule, input size, channels, resize policy or
        tiling, patch grid, versions (docs/deploy.md).
        """
        from ssd_cli.io.onnx_export import export_onnx

        return export_onnx(self._model(), Path(path), force=force)

    # --- scoring ------------------------------------------------------------------------------

    @python_names
    def score(
        self,
        x: Images,
        *,
        threshold: float | None = None,
        contamination: float | None = None,
        top_k: int | None = None,
        batch_size: int = 512,
        workers: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Scores:
        """Score images: folders (recursively), files, PIL images or arrays, resized as the CLI does.

        Flags use the model's threshold, or one of `threshold` (a value), `contamination` (flag
        that fraction of these images) or `top_k`. Files that cannot be read are left out and
        listed in `Scores.skipped`; it is an InputError when nothing at all could be scored.
        """
        rule = ThresholdRule(threshold, contamination, top_k)
        got = self._raw(x, batch_size, workers, on_progress, "score")
        if not got.paths:
            raise InputError(f"score: none of the {len(got.skipped)} image file(s) could be read: {name_skipped(got.skipped)}")
        saved = self._model()
        threshold = resolve(rule, saved.threshold, saved.threshold_rule, got.scores)
        return Scores.build(got.paths, got.scores, threshold, got.skipped, got.maps, self._geometry(), got.images)

    @property
    def has_maps(self) -> bool:
        """True for a patch-level model, whose scores come with anomaly maps."""
        return self._model().patch is not None

    @python_names
    def score_maps(
        self, x: Images, *, batch_size: int = 512, workers: int | None = None, on_progress: ProgressCallback | None = None
    ) -> AnomalyMaps:
        """Anomaly maps of a patch-level model at the resolution it saw, in input order: one (S, S)
        float32 map per readable image at its input size S, each pixel the mean score of the
        patches covering it, smoothed (core/maps.py); a tiled model's are a list of maps at each
        scaled image's own size, stitched from its tiles (core/tiles.py). A whole-image model has
        none (UsageError): its score has no place.
        """
        self._patch("score_maps")
        got = self._raw(x, batch_size, workers, on_progress, "score")
        if not got.paths or got.maps is None:
            raise InputError(f"score: none of the {len(got.skipped)} image file(s) could be read: {name_skipped(got.skipped)}")
        return AnomalyMaps(got.paths, self._input_maps(got.maps), got.skipped)

    @python_names
    def decision_function(self, x: Images, **kwargs: Any) -> np.ndarray:
        """The raw anomaly scores of the readable images, in input order (PyOD's name)."""
        return self.score(x, **kwargs).scores

    @python_names
    def predict(self, x: Images, **kwargs: Any) -> np.ndarray:
        """True where an image is anomalous (score above the threshold), in input order."""
        return self.score(x, **kwargs).anomalous

    @python_names
    def evaluate(
        self,
        normal: Images,
        anomalous: Images,
        *,
        threshold: float | None = None,
        recall: float = 0.95,
        masks: str | Path | None = None,
        batch_size: int = 512,
        workers: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Evaluation:
        """Scores of labeled images and AUROC, AUPRC and precision/recall/F1 at the threshold in use,
        at the F1-best threshold and at the threshold that reaches `recall`.

        With `masks` (a folder; patch-level models only), also pixel AUROC and AUPRO: an anomalous
        image's mask is at its path relative to the anomalous folder it was listed from (data/masks.py),
        normal images count with empty masks, and anomalous images without a mask at image level only.
        """
        if not 0 < recall <= 1:
            raise UsageError(f"--recall must be in (0, 1], got {recall}")
        if _empty(normal) or _empty(anomalous):
            raise InputError("an evaluation needs both normal and anomalous images")
        truth_masks = None
        if masks is not None:  # read before any scoring: a mask of the wrong size is found in seconds
            roots = [p for seg in segments(anomalous) for p in seg.paths]
            saved = self._model()
            truth_masks = read_masks(find_masks(roots, Path(masks)), self._patch("masks").image_size, saved.resize, saved.tile)
            if not truth_masks:
                raise InputError(f"--masks: no mask in '{masks}' belongs to an anomalous image ({_WHERE_MASKS})")
        n = self._raw(normal, batch_size, workers, on_progress, "--normal")
        seen = len(n.paths) + len(n.skipped)
        after = None if on_progress is None else (lambda done, total: on_progress(seen + done, seen + total))
        a = self._raw(anomalous, batch_size, workers, after, "--anomalous")
        for what, got in (("--normal", n), ("--anomalous", a)):
            if not got.paths:  # the metrics would only say that every sample is of the other kind
                raise InputError(f"{what}: none of the {len(got.skipped)} image file(s) could be read: {name_skipped(got.skipped)}")
        both = {p.resolve() for p in n.paths if p is not None} & {p.resolve() for p in a.paths if p is not None}
        if both:
            shown = ", ".join(sorted(str(p) for p in both)[:3])
            raise InputError(f"{len(both)} file(s) are among both the normal and the anomalous images, so their truth is unknown: {shown}")
        raw = np.concatenate([n.scores, a.scores])
        truth = np.r_[np.zeros(len(n.scores), bool), np.ones(len(a.scores), bool)]
        maps = join_grids([n.maps, a.maps]) if n.maps is not None and a.maps is not None else None
        saved = self._model()
        chosen = resolve(ThresholdRule(threshold), saved.threshold, saved.threshold_rule, raw)
        scores = Scores.build(n.paths + a.paths, raw, chosen, n.skipped + a.skipped, maps, self._geometry(), n.images + a.images)
        points = operating_points(raw, truth, chosen, recall)  # the first is the threshold in use
        pixel = None if truth_masks is None else self._pixel_metrics(n.maps, a.paths, a.maps, truth_masks, masks)
        return Evaluation(scores, truth, points[0].metrics, points, pixel)

    # --- internals ----------------------------------------------------------------------------

    def _model(self) -> SavedModel:
        if self.model_ is None:
            raise UsageError("this Detector has no model yet: call fit() or Detector.load()")
        return self.model_

    def _patch(self, what: str) -> PatchSpec:
        patch = self._model().patch
        if patch is None:
            raise no_maps(what)
        return patch

    def _geometry(self) -> MapGeometry | None:
        saved = self._model()
        return None if saved.patch is None else MapGeometry(saved.patch, saved.resize, saved.tile)

    def _input_maps(self, grids: Grids) -> np.ndarray | list[np.ndarray]:
        """Maps at the resolution the model saw: (N, S, S) for a patch-level model, one map per
        scaled image for a tiled one."""
        geometry = self._geometry()
        assert geometry is not None, "only patch-level models have maps"
        return [geometry.at_input(g) for g in grids] if geometry.tile is not None else pixel_maps(np.asarray(grids), geometry.patch)

    def _pixel_metrics(
        self, n_grids: Grids | None, a_paths: list[Path | None], a_grids: Grids | None, masks: dict[Path, np.ndarray], folder: str | Path | None
    ) -> PixelMetrics:
        """Pixel AUROC and AUPRO over the normal images (empty masks) and the anomalous ones with a mask."""
        assert n_grids is not None and a_grids is not None, "a patch-level model's scores come with maps"
        masked = [(i, masks[p]) for i, p in enumerate(a_paths) if p is not None and p in masks]
        if not masked:
            raise InputError(f"--masks: none of the {len(a_paths)} anomalous images that could be read has a mask in '{folder}' ({_WHERE_MASKS})")
        normal = list(self._input_maps(n_grids))
        maps = normal + list(self._input_maps(join_grids([a_grids[i : i + 1] for i, _ in masked])))
        truth = [np.zeros(m.shape, dtype=bool) for m in normal] + [m for _, m in masked]
        return PixelMetrics(pixel_auroc(maps, truth), aupro(maps, truth, FPR_LIMIT), FPR_LIMIT, len(masked), len(a_paths) - len(masked))

    def _scoring(self) -> Scorer:
        if self._scorer is None:
            self._scorer = Scorer(self._model(), resolve_device(self.device))
        return self._scorer

    def _raw(self, x: Images, batch_size: int, workers: int | None, on_progress: ProgressCallback | None, what: str) -> _Raw:
        """Every readable input's score (and what its anomaly map is made from), in input order,
        and what was skipped; `what` names the input in errors (the option that gave it). A tiled
        model takes in-memory images (and tensors) at their own size and scores them one at a
        time, as it does files."""
        if batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
        if workers is not None and workers < 1:
            raise UsageError(f"--workers must be at least 1, got {workers}")
        scorer, saved = self._scoring(), self._model()
        size, channels = saved.input_size, saved.spec.channels
        plan, skipped, in_memory = [], [], []
        for seg in segments(x):
            if seg.paths:
                listing = list_images(seg.paths, what=what)
                skipped += listing.skipped
                plan.append(("files", listing.files))
                continue
            in_memory += _image_getters(seg)
            if saved.tile is not None:
                plan.append(("scaled", seg.images if seg.tensor is None else tuple(_tensor_images(seg.tensor))))
            elif seg.tensor is not None:
                if tuple(seg.tensor.shape[1:]) != (channels, size, size):
                    raise InputError(f"the model takes ({channels}, {size}, {size}) tensors, got {tuple(seg.tensor.shape[1:])}; give arrays or PIL images to have them resized")
                plan.append(("tensor", seg.tensor))
            else:
                fitted = np.stack([fit_image(im, size, channels, saved.resize) for im in seg.images])
                plan.append(("tensor", torch.from_numpy(fitted)))
        # Under torchrun each rank scores its contiguous share of every part; the shares, gathered in
        # rank order, give every rank the same results in the same order as one process would.
        r = ranks()
        mine = [(kind, r.mine(items)) for kind, items in plan]
        total, done = sum(len(items) for _, items in mine), 0
        parts: list[_Part] = []
        for kind, items in mine:
            part = _Part()
            if kind == "files":
                for scored in score_files(scorer, items, batch_size, workers):
                    part.add(scored.paths, scored.scores, scored.maps, scored.skipped)
                    done += len(scored.paths) + len(scored.skipped)
                    _report(on_progress, done, total)
            elif kind == "scaled":
                assert saved.tile is not None
                for im in items:
                    tiled = scorer.score_tiled(fit_scaled(im, saved.tile.scaled, channels))
                    part.add([None], torch.tensor([tiled.score(saved.patch.top_k)]), [tiled], [])
                    done += 1
                    _report(on_progress, done, total)
            else:
                for chunk in items.split(batch_size):
                    maps = scorer.score_maps(chunk) if saved.patch is not None else None
                    part.add([None] * len(chunk), scorer.score(chunk) if maps is None else image_scores(maps, saved.patch.top_k), maps, [])
                    done += len(chunk)
                    _report(on_progress, done, total)
            parts.append(part)
        every = distributed.gather(parts) if r.active else [parts]
        merged = _Part()
        for i in range(len(plan)):
            for rank_parts in every:
                merged.extend(rank_parts[i])
        raw = np.concatenate(merged.scores).astype(np.float64) if merged.scores else np.zeros(0)
        maps = join_grids(merged.maps) if saved.patch is not None and merged.maps else None
        getters = iter(in_memory)  # in-memory images are never skipped: the k-th path None is the k-th of them
        return _Raw(merged.paths, raw, maps, skipped + merged.skipped, [None if p is not None else next(getters) for p in merged.paths])


@dataclass
class _Raw:
    """What `_raw` found: per readable input in input order its path (None in memory), score and
    what gives the in-memory image (None for a file, for reports' thumbnails); maps; what was skipped."""

    paths: list[Path | None]
    scores: np.ndarray
    maps: Grids | None
    skipped: list[Skipped]
    images: list[Callable[[], Any] | None]


@dataclass
class _Part:
    """Scores of one part of the input (a run of files, or of in-memory images) on one rank."""

    paths: list[Path | None] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    maps: list[Grids] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    def add(self, paths: list, scores: torch.Tensor, maps: Grids | torch.Tensor | None, skipped: list[Skipped]) -> None:
        self.paths += paths
        self.scores.append(scores.numpy())
        if maps is not None:
            self.maps.append(maps.numpy() if isinstance(maps, torch.Tensor) else maps)
        self.skipped += skipped

    def extend(self, other: _Part) -> None:
        self.paths += other.paths
        self.scores += other.scores
        self.maps += other.maps
        self.skipped += other.skipped


def _report(on_progress: ProgressCallback | None, done: int, total: int) -> None:
    if on_progress is not None:
        on_progress(done, total)


def _empty(x: Images) -> bool:
    return (isinstance(x, (list, tuple)) or isinstance(x, torch.Tensor)) and len(x) == 0


def _as_paths(x: Images | None, folder: Path) -> list[Path]:
    """Training inputs as paths: paths stay, in-memory images become PNG files in folder."""
    if x is None:
        return []
    out: list[Path] = []
    for seg in segments(x):
        if seg.paths:
            out += seg.paths
        else:
            images = seg.images if seg.tensor is None else tuple(_tensor_images(seg.tensor))
            folder.mkdir(parents=True, exist_ok=True)
            out += save_pngs(images, folder, start=len(out))
    return out


def _tensor_images(t: torch.Tensor) -> list:
    return [_tensor_image(t, i) for i in range(len(t))]


def _tensor_image(t: torch.Tensor, i: int) -> Any:
    """Image i of a uint8 (N, C, H, W) tensor as a PIL image."""
    from PIL import Image

    a = t[i].numpy()
    return Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))


def _image_getters(seg: Any) -> list[Callable[[], Any]]:
    """What gives each in-memory image of a segment, made only when a report shows it."""
    if seg.tensor is not None:
        return [partial(_tensor_image, seg.tensor, i) for i in range(len(seg.tensor))]
    return [partial(_same, im) for im in seg.images]


def _same(image: Any) -> Any:
    return image
