"""Score results: the ranked table and the CSV/JSON files `ssd score` writes."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.table import Table

from . import __version__
from .files import write_text_atomic


@dataclass(frozen=True)
class ScoreRow:
    path: str
    score: float
    anomalous: bool


def ranked_table(rows: list[ScoreRow], threshold: float, top: int) -> Table:
    shown = rows if top <= 0 else rows[:top]
    flagged = sum(r.anomalous for r in rows)
    title = f"{len(rows)} images, {flagged} anomalous (score > {threshold:.4g})"
    if len(shown) < len(rows):
        title += f"; top {len(shown)} shown"
    table = Table(title=title)
    table.add_column("rank", justify="right")
    table.add_column("path", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("anomalous")
    for i, r in enumerate(shown, 1):
        table.add_row(str(i), r.path, f"{r.score:.5g}", "[red]yes[/]" if r.anomalous else "no")
    return table


def write_scores(path: Path, rows: list[ScoreRow], *, model: Path, threshold: float, force: bool) -> None:
    """CSV gets one '#' comment line naming the tool version, model and threshold; JSON a header object."""
    if path.suffix.lower() == ".json":
        doc = {"tool": "ssd", "tool_version": __version__, "model": str(model), "threshold": threshold, "scores": [asdict(r) for r in rows]}
        text = json.dumps(doc, indent=1) + "\n"
    else:
        buf = io.StringIO()
        buf.write(f"# written by ssd {__version__}; model={model}; threshold={threshold!r}\n")
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "score", "anomalous"])
        w.writerows([r.path, repr(r.score), int(r.anomalous)] for r in rows)
        text = buf.getvalue()
    write_text_atomic(path, text, force)
