"""Scores of a set of images, and the files made from them: CSV, JSON, a folder of the flagged and
one of anomaly maps.

`Scores` is what `Detector.score` returns and what every output of `ssd score` is written from, so
the CLI, the Python API and the files agree. The CSV is plain (header on the first line, one row per
image, most anomalous first) so that csv.DictReader, pandas and spreadsheets read it as it is; what
describes the run (tool version, model, threshold and its rule, skipped files) goes to the JSON file
and the HTML report.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ssd_cli import __version__
from ssd_cli.errors import OutputExistsError, UsageError, python_names
from ssd_cli.io.files import csv_text, printable, write_atomic, write_text_atomic
from ssd_cli.io.heatmaps import MapGeometry, heatmap_png
from ssd_cli.data.images import DECODE_ERRORS, Skipped, displayed_size
from ssd_cli.metrics import DetectionMetrics, PixelMetrics
from ssd_cli.thresholds import OperatingPoint, Threshold, normalised

CSV_COLUMNS = ("path", "score", "normalised_score", "anomalous", "rank")


@dataclass(frozen=True)
class ScoreResult:
    """One image: where it came from, its score ||phi(x) - c||, score / threshold, and the flag."""

    index: int  # position among the scored inputs
    path: Path | None  # None for an in-memory image
    score: float
    normalised: float  # score / threshold: above 1 = anomalous
    anomalous: bool
    rank: int  # 1 = the highest score

    @property
    def name(self) -> str:
        """The path as text for outputs (\\xNN escapes for bytes that are not UTF-8)."""
        return printable(self.path) if self.path is not None else f"<image {self.index}>"


@dataclass
class Scores:
    """All results in input order, the threshold that flagged them, and what could not be scored."""

    results: list[ScoreResult]
    threshold: Threshold
    skipped: list[Skipped] = field(default_factory=list)
    maps: Sequence | None = None  # patch-level models: per image, its patch scores (core/scoring.Grids), input order
    geometry: MapGeometry | None = None  # patch-level models: how maps lie in the images
    images: Sequence | None = None  # per result, None for a file, or what gives the in-memory image (for reports)

    @classmethod
    def build(
        cls, paths: list[Path | None], scores: np.ndarray, threshold: Threshold, skipped: list[Skipped],
        maps: Sequence | None = None, geometry: MapGeometry | None = None, images: Sequence | None = None,
    ) -> Scores:  # fmt: skip
        s = np.asarray(scores, dtype=np.float64)
        norm = normalised(s, threshold.value)
        order = np.argsort(-np.nan_to_num(s, nan=np.inf), kind="stable")  # equal scores rank in input order
        ranks = np.empty(len(s), dtype=np.int64)
        ranks[order] = np.arange(1, len(s) + 1)
        # A NaN score is never normal: "not <= threshold" flags it (and it ranks first).
        flags = ranks <= threshold.count if threshold.count is not None else ~(s <= threshold.value)
        results = [ScoreResult(i, p, float(s[i]), float(norm[i]), bool(flags[i]), int(ranks[i])) for i, p in enumerate(paths)]
        return cls(results, threshold, list(skipped), maps, geometry, images)

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[ScoreResult]:
        return iter(self.results)

    def __getitem__(self, i: int) -> ScoreResult:
        return self.results[i]

    @property
    def scores(self) -> np.ndarray:
        return np.array([r.score for r in self.results], dtype=np.float64)

    @property
    def anomalous(self) -> np.ndarray:
        return np.array([r.anomalous for r in self.results], dtype=bool)

    @property
    def n_flagged(self) -> int:
        return sum(r.anomalous for r in self.results)

    def ranked(self) -> list[ScoreResult]:
        """Most anomalous first."""
        return sorted(self.results, key=lambda r: r.rank)

    def describe(self, facts: Sequence[tuple[str, str]] = ()) -> dict:
        """What the JSON output and the report say about the run, besides the rows."""
        return {
            "tool": "ssd",
            "tool_version": __version__,
            "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **dict(facts),
            "threshold": self.threshold.value,
            "threshold_rule": self.threshold.rule,
            "n_scored": len(self.results),
            "n_flagged": self.n_flagged,
            "skipped": [{"path": printable(s.path), "reason": s.reason} for s in self.skipped],
        }

    @python_names
    def write(self, path: str | Path, *, force: bool = False, facts: Sequence[tuple[str, str]] = (), gallery: int = 48) -> None:
        """Write .csv (plain rows, most anomalous first), .json (the description and the rows) or
        .html (a report to look at, with `gallery` thumbnails), atomically; `facts` are lines about
        the model for the JSON and the report."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            rows = [_row(r) for r in self.ranked()]
            text = json.dumps({**self.describe(facts), "scores": rows}, indent=1, default=str) + "\n"
        elif suffix == ".csv":
            buf = io.StringIO()
            w = csv.writer(buf, lineterminator="\n")
            w.writerow(CSV_COLUMNS)
            w.writerows([csv_text(r.name), repr(r.score), repr(r.normalised), int(r.anomalous), r.rank] for r in self.ranked())
            text = buf.getvalue()
        elif suffix in (".html", ".htm"):
            from ssd_cli.io.htmlreport import score_report

            text = score_report(
                report_items(self), title="ssd score", facts=facts, threshold=self.threshold.value, threshold_rule=self.threshold.rule,
                skipped=_skipped(self.skipped), gallery=gallery, tool_version=__version__,
            )  # fmt: skip
        else:
            raise UsageError(f"scores can be written to .csv, .json or .html, not '{path.name}'")
        write_text_atomic(path, text, force)


@dataclass(frozen=True)
class AnomalyMaps:
    """A patch-level model's anomaly maps (`Detector.score_maps`), in input order."""

    paths: list[Path | None]  # None for an in-memory image
    # float32 at the resolution the model saw, one map per path: (N, S, S) at a patch-level model's
    # input S, or a tiled model's list of (h, w) maps, each at its scaled image's size
    maps: np.ndarray | list[np.ndarray]
    skipped: list[Skipped] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class Evaluation:
    """Scores of labeled images and the metrics they give (normals first, then anomalies)."""

    scores: Scores
    is_anomaly: np.ndarray
    metrics: DetectionMetrics  # at the threshold in use
    points: list[OperatingPoint]  # the threshold in use, F1-best, and the target recall
    pixel: PixelMetrics | None = None  # with ground-truth masks: pixel AUROC and AUPRO

    def to_dict(self) -> dict:
        pixel = {} if self.pixel is None else {"pixel": self.pixel.to_dict()}
        return {
            "metrics": self.metrics.to_dict(),
            "threshold_rule": self.scores.threshold.rule,
            "operating_points": [{"name": p.name, **p.metrics.to_dict()} for p in self.points],
            **pixel,
        }

    @python_names
    def write(self, path: str | Path, *, force: bool = False, facts: Sequence[tuple[str, str]] = (), gallery: int = 48) -> None:
        """Write .json (metrics, operating points and every score with its label) or .html (the report)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            rows = [{**_row(r), "is_anomaly": bool(self.is_anomaly[r.index])} for r in self.scores.ranked()]
            text = json.dumps({**self.scores.describe(facts), **self.to_dict(), "scores": rows}, indent=1, default=str) + "\n"
        elif suffix in (".html", ".htm"):
            from ssd_cli.io.htmlreport import evaluate_report

            m = self.metrics
            text = evaluate_report(
                report_items(self.scores, self.is_anomaly), title="ssd evaluate", facts=facts, threshold=m.threshold,
                threshold_rule=self.scores.threshold.rule, auroc=m.auroc, auprc=m.auprc,
                points=[(p.name, p.metrics) for p in self.points], pixel=self.pixel, skipped=_skipped(self.scores.skipped), gallery=gallery,
                tool_version=__version__,
            )  # fmt: skip
        else:
            raise UsageError(f"an evaluation can be written to .json or .html, not '{path.name}'")
        write_text_atomic(path, text, force)


def report_items(scores: Scores, is_anomaly: np.ndarray | None = None) -> list:
    """The rows of an HTML report, most anomalous first, with anomaly maps where the model has them
    (made only for the thumbnails the report shows)."""
    from ssd_cli.io.htmlreport import ReportItem

    def heatmap(i: int) -> Callable[[tuple[int, int]], np.ndarray] | None:
        if scores.maps is None or scores.geometry is None:
            return None
        return partial(scores.geometry.at_image, scores.maps[i])

    return [
        ReportItem(
            path=r.path, index=r.index, score=r.score, normalised=r.normalised, anomalous=r.anomalous, rank=r.rank,
            truth=None if is_anomaly is None else bool(is_anomaly[r.index]), heatmap=heatmap(r.index),
            image=None if scores.images is None else scores.images[r.index],
        )  # fmt: skip
        for r in scores.ranked()
    ]


def _skipped(skipped: list[Skipped]) -> list[tuple[str, str]]:
    return [(printable(s.path), s.reason) for s in skipped]


def _row(r: ScoreResult) -> dict:
    return {"path": r.name, "score": r.score, "normalised_score": r.normalised, "anomalous": r.anomalous, "rank": r.rank}


def check_folder_target(folder: Path, force: bool) -> None:
    """Before any scoring: the folder for the flagged files must be new or empty (or --force)."""
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"'{folder}' is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise OutputExistsError(f"folder '{folder}' is not empty; pass --force to add to it (files of the same name are replaced)")
    if not folder.exists() and not folder.parent.is_dir():
        raise UsageError(f"cannot create '{folder}': folder '{folder.parent}' does not exist")


def export_flagged(scores: Scores, folder: Path, *, link: bool = False) -> list[Path]:
    """Copy (or symlink) the flagged files into folder, most anomalous first. Names start with the
    rank (0001-name.png), which keeps them unique and sorts the folder by score; each file appears
    whole or not at all (written under a temporary name, then renamed)."""
    flagged = [r for r in scores.ranked() if r.anomalous and r.path is not None]
    folder.mkdir(exist_ok=True)
    written = []
    for r in flagged:
        assert r.path is not None
        target = folder / rank_name(r.rank, r.path.name, len(scores))
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".part", dir=folder)
        os.close(fd)
        try:
            if link:
                os.unlink(tmp)
                os.symlink(r.path.resolve(), tmp)
            else:
                shutil.copy2(r.path, tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


def rank_name(rank: int, name: str, n: int) -> str:
    """RANK-NAME (0001-name.png): unique among the scored images and sorted by score."""
    return f"{rank:0{max(4, len(str(n)))}d}-{name}"


def write_maps(
    scores: Scores, folder: Path, *, force: bool = False, on_progress: Callable[[int, int], None] | None = None
) -> list[Path]:
    """One PNG heatmap per scored file at the file's size as displayed (heatmaps.py's colour scale,
    the threshold in use mid-scale), named RANK-STEM.png, most anomalous first; each written
    atomically. check_folder_target comes first. A file that can no longer be read gets no map.
    """
    if scores.maps is None or scores.geometry is None:
        raise UsageError("these scores have no anomaly maps (a whole-image model)")
    files = [r for r in scores.ranked() if r.path is not None]
    folder.mkdir(exist_ok=True)
    written = []
    for done, r in enumerate(files, 1):
        assert r.path is not None
        try:
            wh = displayed_size(r.path)
        except DECODE_ERRORS:
            wh = None
        if wh is not None:
            target = folder / rank_name(r.rank, f"{r.path.stem}.png", len(scores))
            write_atomic(target, heatmap_png(scores.geometry.at_image(scores.maps[r.index], wh), scores.threshold.value), force)
            written.append(target)
        if on_progress is not None:
            on_progress(done, len(files))
    return written
