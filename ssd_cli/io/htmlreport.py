"""One self-contained HTML page of anomaly scores, for `ssd score` and `ssd evaluate`.

The page must open anywhere, offline and years later: no CDN, no script, plots are inline SVG
(`svg.py`) and thumbnails are small JPEGs embedded as data URIs. Only a bounded number of thumbnails
is made (the top of the ranking, the most normal, the worst misses), so a folder of 100k images gives
a page of the same size as one of 100.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from ssd_cli.data.images import open_image
from ssd_cli.io.files import printable
from ssd_cli.io import svg
from ssd_cli.io import heatmaps
from ssd_cli.io.heatmaps import overlay

if TYPE_CHECKING:  # metrics pulls in scikit-learn, which `ssd score` should not pay for
    from ssd_cli.metrics import DetectionMetrics, PixelMetrics

MAX_SKIPPED_LISTED = 200
JPEG_QUALITY = 80

_COLORS = {"images": "#6f8fb4", "normal": "#6f9fd8", "anomalous": "#d9534f", "unlabelled": "#b0b0b0"}


@dataclass(frozen=True)
class ReportItem:
    """One scored image as the report shows it."""

    path: Path | None  # None for in-memory images (named "image #index", their thumbnail from `image`)
    index: int  # position in the input
    score: float
    normalised: float  # score / threshold; above 1 = anomalous
    anomalous: bool  # flagged at the threshold
    rank: int  # 1 = most anomalous
    truth: bool | None = None  # evaluate only: True = labelled anomaly
    # Patch-level models: the image's anomaly map at a given (width, height), NaN where not seen
    heatmap: Callable[[tuple[int, int]], np.ndarray] | None = None
    image: Callable[[], Image.Image] | None = None  # an in-memory image (path None), for its thumbnail


def thumbnail_uri(
    source: Path | Callable[[], Image.Image], px: int = 160, heatmap: Callable[[tuple[int, int]], np.ndarray] | None = None, threshold: float = math.nan
) -> str | None:
    """A JPEG data URI of the image as displayed (EXIF orientation applied), at most px on a side;
    `source` is its file, or gives the in-memory image (never changed here).

    Returns None for a file that cannot be read: a thumbnail is decoration, and one bad file must not
    cost the whole report. Images under px/2 are enlarged by a whole factor (nearest neighbour) so
    they stay crisp. With a heatmap, the anomaly map is laid over it, coloured on the threshold's
    scale (heatmaps.py).
    """
    try:
        if isinstance(source, Path):
            with open_image(source) as im:
                im.draft("RGB", (px, px))  # JPEG: decode at 1/2..1/8 scale, both sides still >= px
                shown = _to_rgb(ImageOps.exif_transpose(im))
        else:
            shown = _to_rgb(ImageOps.exif_transpose(source()))  # a copy: thumbnail() works in place
        shown.thumbnail((px, px))
        factor = px // max(shown.size)
        if factor >= 2:  # tiny images (28x28 digits) grow by whole pixels, so the browser need not blur them
            shown = shown.resize((shown.width * factor, shown.height * factor), Image.Resampling.NEAREST)
        if heatmap is not None:
            shown = overlay(shown, heatmap(shown.size), threshold)
        buf = io.BytesIO()
        shown.save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    except Exception:  # OSError, ValueError, DecompressionBombError, SyntaxError, and odder types on malformed files
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def score_report(
    items: Sequence[ReportItem],
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    threshold: float,
    threshold_rule: str,
    skipped: Sequence[tuple[str, str]] = (),
    gallery: int = 48,
    normal_strip: int = 12,
    thumb_px: int = 160,
    tool_version: str,
) -> str:
    """The page for `ssd score`: summary, histogram, the most anomalous images and the most normal ones."""
    thumbs = _Thumbs(thumb_px, threshold)
    ranked = _by_rank(items)
    scores = np.array([it.score for it in items], dtype=np.float64)
    edges, counts = svg.bin_scores(scores, None, threshold=threshold)
    body = [
        _header(title, tool_version),
        _summary(items, facts, threshold, threshold_rule, skipped),
        _section(
            "histogram",
            "Score distribution",
            _hist_note(items, scores) + svg.histogram(edges, counts, _COLORS, threshold),
        ),
        _gallery_section(ranked, gallery, thumbs),
        _normals_section(items, normal_strip, thumbs),
    ]
    return _page(title, body, thumb_px)


def evaluate_report(
    items: Sequence[ReportItem],
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    threshold: float,
    threshold_rule: str,
    auroc: float,
    auprc: float,
    points: Sequence[tuple[str, DetectionMetrics]],
    pixel: PixelMetrics | None = None,
    skipped: Sequence[tuple[str, str]] = (),
    gallery: int = 48,
    misses: int = 12,
    thumb_px: int = 160,
    tool_version: str,
) -> str:
    """The page for `ssd evaluate`: the score page plus curves, operating points and the worst misses;
    with `pixel` (ground-truth masks), the pixel-level metrics too."""
    thumbs = _Thumbs(thumb_px, threshold)
    ranked = _by_rank(items)
    scores = np.array([it.score for it in items], dtype=np.float64)
    truth = [it.truth for it in items]
    groups = {
        "normal": np.array([t is False for t in truth], dtype=bool),
        "anomalous": np.array([t is True for t in truth], dtype=bool),
    }
    unlabelled = np.array([t is None for t in truth], dtype=bool)
    if unlabelled.any():
        groups["unlabelled"] = unlabelled
    edges, counts = svg.bin_scores(scores, groups, threshold=threshold)
    body = [
        _header(title, tool_version),
        _summary(items, facts, threshold, threshold_rule, skipped, quality=(auroc, auprc), pixel=pixel),
        _section(
            "histogram",
            "Score distribution by label",
            _hist_note(items, scores) + svg.histogram(edges, counts, _COLORS, threshold),
        ),
        _curves_section(items),
        _points_section(points),
        _gallery_section(ranked, gallery, thumbs),
        _misses_section(items, misses, thumbs),
    ]
    return _page(title, body, thumb_px)


# ---------------------------------------------------------------- sections


def _header(title: str, tool_version: str) -> str:
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return (
        f"<header><h1>{escape(title)}</h1>"
        f'<p class="meta">ssd {escape(tool_version)} · generated <time datetime="{when}">{when}</time></p></header>'
    )


def _summary(
    items: Sequence[ReportItem],
    facts: Sequence[tuple[str, str]],
    threshold: float,
    threshold_rule: str,
    skipped: Sequence[tuple[str, str]],
    quality: tuple[float, float] | None = None,
    pixel: PixelMetrics | None = None,
) -> str:
    n = len(items)
    flagged = sum(1 for it in items if it.anomalous)
    share = f" ({100 * flagged / n:.1f}%)" if n else ""
    stats = [
        _stat("n-scored", str(n), "images scored"),
        _stat("n-flagged", str(flagged), f"flagged anomalous{share}"),
        _stat("n-skipped", str(len(skipped)), "skipped"),
        _stat("threshold", _num(threshold), "threshold"),
    ]
    extra = ""
    if quality is not None:
        labelled = [it for it in items if it.truth is not None]
        n_anom = sum(1 for it in labelled if it.truth)
        stats += [
            _stat("auroc", f"{quality[0]:.4f}", "AUROC"),
            _stat("auprc", f"{quality[1]:.4f}", "AUPRC (average precision)"),
            _stat("n-normal", str(len(labelled) - n_anom), "labelled normal"),
            _stat("n-anomalous", str(n_anom), "labelled anomalous"),
        ]
        extra = _confusion(labelled)
    if pixel is not None:
        stats += [
            _stat("pixel-auroc", f"{pixel.auroc:.4f}", "pixel AUROC"),
            _stat("pixel-aupro", f"{pixel.aupro:.4f}", f"AUPRO (FPR up to {pixel.fpr_limit:g})"),
            _stat("n-masked", str(pixel.n_masked), "anomalous with a mask"),
            _stat("n-without-mask", str(pixel.n_anomalous_without_mask), "anomalous without a mask (image level only)"),
        ]
    rows = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in facts)
    parts = [
        f'<div class="stats">{"".join(stats)}</div>',
        f'<p class="rule">An image is flagged anomalous when its score is above the threshold '
        f'<code>{escape(_num(threshold))}</code>, set by: {escape(threshold_rule)}. '
        f"The normalised score is score / threshold, so above 1 means anomalous.</p>",
        extra,
        f'<table class="facts">{rows}</table>' if rows else "",
        _skipped_list(skipped),
    ]
    return _section("summary", "Summary", "".join(parts))


def _stat(id_: str, value: str, label: str) -> str:
    return f'<div class="stat"><span class="value" id="{id_}">{escape(value)}</span><span class="label">{escape(label)}</span></div>'


def _confusion(labelled: Sequence[ReportItem]) -> str:
    tp = sum(1 for it in labelled if it.truth and it.anomalous)
    fn = sum(1 for it in labelled if it.truth and not it.anomalous)
    fp = sum(1 for it in labelled if not it.truth and it.anomalous)
    tn = sum(1 for it in labelled if not it.truth and not it.anomalous)
    return (
        '<table class="confusion" id="confusion"><caption>At the threshold</caption>'
        "<tr><th></th><th>flagged anomalous</th><th>passed as normal</th></tr>"
        f'<tr><th>labelled anomalous</th><td class="good" id="n-tp">{tp}</td><td class="bad" id="n-fn">{fn}</td></tr>'
        f'<tr><th>labelled normal</th><td class="bad" id="n-fp">{fp}</td><td class="good" id="n-tn">{tn}</td></tr>'
        "</table>"
    )


def _skipped_list(skipped: Sequence[tuple[str, str]]) -> str:
    if not skipped:
        return ""
    lines = "".join(
        f"<li><code>{escape(str(p))}</code> — {escape(str(why))}</li>" for p, why in skipped[:MAX_SKIPPED_LISTED]
    )
    more = len(skipped) - MAX_SKIPPED_LISTED
    tail = f'<p class="more">and {more} more</p>' if more > 0 else ""
    return f'<details class="skipped"><summary>{len(skipped)} skipped file{"" if len(skipped) == 1 else "s"}</summary><ul>{lines}</ul>{tail}</details>'


def _hist_note(items: Sequence[ReportItem], scores: np.ndarray) -> str:
    bad = int(np.sum(~np.isfinite(scores)))
    note = f"All {len(items)} scores; the dashed line is the threshold."
    if bad:
        note += f" {bad} non-finite scores are left out."
    return f'<p class="note">{note}</p>'


def _curves_section(items: Sequence[ReportItem]) -> str:
    labelled = [it for it in items if it.truth is not None and math.isfinite(it.score)]
    y = np.array([bool(it.truth) for it in labelled], dtype=bool)
    if y.all() or not y.any():
        return _section("curves", "ROC and precision-recall", '<p class="note">Curves need both normal and anomalous images.</p>')
    from sklearn.metrics import precision_recall_curve, roc_curve

    s = np.array([it.score for it in labelled], dtype=np.float64)
    flagged = np.array([it.anomalous for it in labelled], dtype=bool)
    tp, fp = int(np.sum(flagged & y)), int(np.sum(flagged & ~y))
    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    recall_at = tp / int(y.sum())
    roc = svg.curve(
        fpr, tpr, x_label="false positive rate", y_label="true positive rate", title="ROC",
        diagonal=True, marker=(fp / int((~y).sum()), recall_at),
    )  # fmt: skip
    pr = svg.curve(
        recall, precision, x_label="recall", y_label="precision", title="Precision-recall",
        marker=(recall_at, tp / (tp + fp)) if tp + fp else None,
    )  # fmt: skip
    note = '<p class="note">The red dot is the model threshold. The dashed diagonal is a random ranking.</p>'
    return _section("curves", "ROC and precision-recall", f'{note}<div class="curves">{roc}{pr}</div>')


def _points_section(points: Sequence[tuple[str, DetectionMetrics]]) -> str:
    head = "<tr><th>operating point</th><th>threshold</th><th>precision</th><th>recall</th><th>F1</th><th>TP</th><th>FP</th><th>TN</th><th>FN</th></tr>"
    rows = "".join(
        f"<tr><th>{escape(name)}</th><td><code>{float(m.threshold)!r}</code></td>"  # exact, for copying
        f"<td>{m.precision:.3f}</td><td>{m.recall:.3f}</td><td>{m.f1:.3f}</td>"
        f"<td>{m.tp}</td><td>{m.fp}</td><td>{m.tn}</td><td>{m.fn}</td></tr>"
        for name, m in points
    )
    note = (
        '<p class="note">Thresholds that trade false alarms for misses differently. '
        "Pass any of these to <code>ssd score --threshold</code>.</p>"
    )
    return _section("points", "Operating points", f'{note}<table class="points">{head}{rows}</table>')


def _gallery_section(ranked: Sequence[ReportItem], gallery: int, thumbs: _Thumbs) -> str:
    top = ranked[: max(gallery, 0)]
    note = f'<p class="note">Showing top {len(top)} of {len(ranked)}, most anomalous first.</p>'
    legend = _legend() if any(it.heatmap is not None and it.path is not None for it in top) else ""
    return _section("gallery", "Most anomalous", note + legend + _grid(top, thumbs))


def _legend() -> str:
    """The overlays' colour scale, from 0 to twice the threshold, as a CSS gradient (no image)."""
    ends = (0, 63, 127, 128, 191, 255)  # each half's ends and middle; the step at the threshold stays sharp
    stops = ", ".join(f"rgb{tuple(int(c) for c in heatmaps.PALETTE[i])} {100 * (i + (i >= 128)) / 256:.1f}%" for i in ends)
    return (
        '<div class="legend" id="heat-legend"><p class="note">Each thumbnail carries its anomaly map: '
        "blue below the threshold, yellow to red above it (dark red at twice the threshold and beyond).</p>"
        f'<div class="scale" style="background: linear-gradient(to right, {stops})"></div>'
        '<div class="ticks"><span>0</span><span>threshold</span><span>2 × threshold</span></div></div>'
    )


def _normals_section(items: Sequence[ReportItem], normal_strip: int, thumbs: _Thumbs) -> str:
    lowest = sorted(items, key=_score_key)[: max(normal_strip, 0)]
    note = f'<p class="note">The {len(lowest)} lowest scores, for contrast.</p>'
    return _section("normals", "Most normal", note + _grid(lowest, thumbs, strip=True))


def _misses_section(items: Sequence[ReportItem], misses: int, thumbs: _Thumbs) -> str:
    n = max(misses, 0)
    anomalies = sorted((it for it in items if it.truth is True), key=_score_key)[:n]
    normals = sorted((it for it in items if it.truth is False), key=_score_key, reverse=True)[:n]
    missed = sum(1 for it in anomalies if not it.anomalous)
    alarms = sum(1 for it in normals if it.anomalous)
    body = (
        f'<h3>Anomalies scored most normal <span class="sub">({missed} of these {len(anomalies)} passed as normal)</span></h3>'
        f'<div id="missed-anomalies">{_grid(anomalies, thumbs)}</div>'
        f'<h3>Normals scored most anomalous <span class="sub">({alarms} of these {len(normals)} flagged)</span></h3>'
        f'<div id="false-alarms">{_grid(normals, thumbs)}</div>'
    )
    return _section("misses", "Worst misses", body)


# ---------------------------------------------------------------- cards


class _Thumbs:
    """Thumbnails made once per item, as an item can show in several sections."""

    def __init__(self, px: int, threshold: float) -> None:
        self.px = px
        self.threshold = threshold
        self._done: dict[int, str | None] = {}

    def __call__(self, item: ReportItem) -> str | None:
        source = Path(item.path) if item.path is not None else item.image
        if source is None:
            return None
        key = id(item)
        if key not in self._done:
            self._done[key] = thumbnail_uri(source, self.px, item.heatmap, self.threshold)
        return self._done[key]


def _grid(items: Sequence[ReportItem], thumbs: Callable[[ReportItem], str | None], strip: bool = False) -> str:
    if not items:
        return '<p class="note">None.</p>'
    cls = "grid strip" if strip else "grid"
    return f'<div class="{cls}">{"".join(_card(it, thumbs(it)) for it in items)}</div>'


def _card(item: ReportItem, uri: str | None) -> str:
    name = f"image #{item.index}" if item.path is None else printable(item.path)
    if uri:
        picture = f'<img src="{uri}" alt="{escape(_short(name))}">'
    else:
        why = "in-memory image" if item.path is None else "no preview"
        picture = f'<div class="nothumb">{why}</div>'
    badge = '<span class="badge bad">anomalous</span>' if item.anomalous else '<span class="badge ok">normal</span>'
    truth = ""
    if item.truth is not None:
        label = "labelled anomaly" if item.truth else "labelled normal"
        right = item.truth == item.anomalous
        truth = f'<div class="truth {"right" if right else "wrong"}">{label}</div>'
    state = "anomalous" if item.anomalous else "normal"
    return (
        f'<figure class="card {state}" data-rank="{item.rank}" data-score="{float(item.score)!r}" data-index="{item.index}">'
        f'<div class="thumb">{picture}</div><figcaption>'
        f'<div class="row"><span class="rank">#{item.rank}</span>{badge}</div>'
        f'<div class="row"><span>score <b>{escape(_num(item.score))}</b></span>'
        f'<span class="norm" title="normalised score = score / threshold">{escape(_norm(item.normalised))}</span></div>'
        f'{truth}<div class="path" title="{escape(name)}">{escape(_short(name))}</div>'
        "</figcaption></figure>"
    )


# ---------------------------------------------------------------- helpers


def _by_rank(items: Sequence[ReportItem]) -> list[ReportItem]:
    return sorted(items, key=lambda it: it.rank)


def _score_key(item: ReportItem) -> tuple[bool, float]:
    """Ascending score with non-finite scores last, so NaN never counts as the most normal."""
    s = float(item.score)
    return (not math.isfinite(s), s if math.isfinite(s) else 0.0)


def _short(name: str, limit: int = 28) -> str:
    """The end of a path, where the file name is; the full path goes in a tooltip."""
    if len(name) <= limit:
        return name
    tail = "/".join(name.replace("\\", "/").split("/")[-2:])
    return "…/" + tail if len(tail) <= limit - 2 else "…" + name[-(limit - 1) :]


def _num(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    return f"{v:.4g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.3e}"


def _norm(v: float) -> str:
    v = float(v)
    return f"{v:.3g}× thr" if math.isfinite(v) else str(v)


def _section(id_: str, heading: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{escape(heading)}</h2>{body}</section>'


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB as displayed: transparency on white, 16-bit and float scaled rather than clipped."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max(initial=0.0))
        scale = 1.0 if top <= 1.0 and im.mode == "F" else (255.0 if top <= 255 else 65535.0)
        im = Image.fromarray(np.clip(arr / scale * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(back, rgba).convert("RGB")
    return im.convert("RGB")


def _page(title: str, body: Sequence[str], thumb_px: int) -> str:
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f'<body style="--thumb: {int(thumb_px)}px"><main>{"".join(body)}</main></body></html>\n'
    )


_CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --bad: #c9302c; --ok: #6e7781; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 8px; }
.meta, .note, .sub, .more { color: var(--muted); }
code { font: 12px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--bg);
  padding: 1px 4px; border-radius: 4px; }
.stats { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.stat { background: var(--bg); border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 120px; }
.stat .value { display: block; font-size: 20px; font-weight: 600; }
.stat .label { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 10px 0; }
th, td { border: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: var(--bg); font-weight: 600; }
table.points td, table.confusion td { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding-bottom: 4px; }
td.good { color: #1a7f37; } td.bad { color: var(--bad); }
details.skipped { margin: 10px 0; } details.skipped ul { max-height: 320px; overflow: auto; }
svg.plot { max-width: 100%; height: auto; display: block; }
.curves { display: flex; flex-wrap: wrap; gap: 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(calc(var(--thumb) + 24px), 1fr)); gap: 12px; }
.card { margin: 0; border: 1px solid var(--line); border-radius: 8px; overflow: hidden; background: #fff; }
.card.anomalous { border-color: #e8a3a1; }
.thumb { height: calc(var(--thumb) + 8px); padding: 4px; background: var(--bg);
  display: flex; align-items: center; justify-content: center; }
.thumb img { width: 100%; height: 100%; object-fit: contain; }
.nothumb { color: var(--muted); font-size: 12px; }
figcaption { padding: 6px 8px 8px; font-size: 12px; }
.row { display: flex; justify-content: space-between; align-items: center; }
.rank { font-weight: 600; } .norm { color: var(--muted); }
.badge { border-radius: 10px; padding: 0 8px; color: #fff; font-size: 11px; }
.badge.bad { background: var(--bad); } .badge.ok { background: var(--ok); }
.path { color: var(--muted); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; direction: ltr; }
.legend { max-width: 360px; margin: 4px 0 12px; }
.legend .scale { height: 12px; border-radius: 3px; border: 1px solid var(--line); }
.legend .ticks { display: flex; justify-content: space-between; color: var(--muted); font-size: 11px; }
.truth.wrong { color: var(--bad); font-weight: 600; } .truth.right { color: #1a7f37; }
"""
