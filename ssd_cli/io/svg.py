"""Tiny inline-SVG plots for the HTML report, written by hand so the report needs no plotting library.

Every function returns an `<svg>` element as a string, ready to paste into a page. Bars carry their
counts as data attributes so that tests (and curious readers) can check them without parsing pixels.
Inline SVG in an HTML page needs no xmlns, so the output holds no URL at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

MAX_CURVE_POINTS = 400

_FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11"'
_AXIS = "#555"
_GRID = "#e4e4e4"


def bin_scores(
    scores: np.ndarray,
    groups: Mapping[str, np.ndarray] | None = None,
    n_bins: int = 40,
    threshold: float | None = None,
) -> tuple[np.ndarray, dict[str, list[int]]]:
    """Bin edges and per-group counts over the finite scores.

    Every finite score lands in exactly one bin (the maximum in the last), so the counts add up to the
    number of finite scores in each group. The range is stretched to contain a finite threshold so that
    its line can be drawn even when every score lies on one side of it.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    finite = np.isfinite(s)
    masks = {"images": np.ones(s.shape, dtype=bool)} if groups is None else groups
    n_bins = max(1, int(n_bins))
    lo, hi = (float(s[finite].min()), float(s[finite].max())) if finite.any() else (0.0, 1.0)
    if threshold is not None and math.isfinite(threshold):
        pad = 0.02 * max(hi - lo, abs(threshold - lo), abs(threshold - hi))
        if threshold <= lo:
            lo = threshold - pad
        if threshold >= hi:
            hi = threshold + pad
    if hi <= lo:  # all scores equal (and no threshold elsewhere): give the single value some width
        half = 0.5 * abs(lo) if lo else 0.5
        lo, hi = lo - half, hi + half
    edges = np.linspace(lo, hi, n_bins + 1)
    counts: dict[str, list[int]] = {}
    for name, mask in masks.items():
        m = np.asarray(mask, dtype=bool).ravel()
        if m.shape != s.shape:
            raise ValueError(f"group {name!r} mask has shape {m.shape}, scores have {s.shape}")
        hist, _ = np.histogram(s[m & finite], bins=edges)
        counts[name] = [int(c) for c in hist]
    return edges, counts


def histogram(
    bins_edges: Sequence[float] | np.ndarray,
    counts_by_group: Mapping[str, Sequence[int]],
    colors: Mapping[str, str],
    threshold: float | None,
    width: int = 640,
    height: int = 220,
    x_label: str = "anomaly score",
) -> str:
    """Stacked bars per bin, with a dashed threshold line; a legend appears when there is more than one group."""
    edges = [float(e) for e in bins_edges]
    n_bins = len(edges) - 1
    names = list(counts_by_group)
    totals = [sum(int(counts_by_group[g][i]) for g in names) for i in range(n_bins)]
    total = sum(totals)
    legend_h = 18 if len(names) > 1 else 0
    left, right, top, bottom = 46, 14, 10 + legend_h, 38
    pw, ph = width - left - right, height - top - bottom
    lo, hi = (edges[0], edges[-1]) if n_bins > 0 else (0.0, 1.0)
    span = hi - lo or 1.0
    y_max = max(1, max(totals, default=0))
    y_ticks = [t for t in _nice_ticks(0, y_max, 4) if t == int(t) and t <= y_max]
    y_top = 1.08 * max(y_max, y_ticks[-1] if y_ticks else 1)  # headroom for the threshold label

    def sx(v: float) -> float:
        return left + (v - lo) / span * pw

    def sy(v: float) -> float:
        return top + ph - v / y_top * ph

    out = [
        f'<svg class="plot histogram" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" data-total="{total}" {_FONT}>',
        f"<title>{escape(x_label)} histogram of {total} images</title>",
    ]
    for t in y_ticks:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 5}" y="{y + 3.5:.1f}" text-anchor="end" fill="{_AXIS}">{_fmt(t)}</text>')
    for i in range(n_bins):
        x0, x1 = sx(edges[i]), sx(edges[i + 1])
        bar_w = max(x1 - x0 - 1.0, 0.8)
        base = 0
        for g in names:
            c = int(counts_by_group[g][i])
            if c <= 0:
                continue
            y_hi, y_lo = sy(base + c), sy(base)
            closing = "]" if i == n_bins - 1 else ")"
            tip = f"{g}: {c} in [{_fmt(edges[i])}, {_fmt(edges[i + 1])}{closing}"
            out.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{y_hi:.1f}" width="{bar_w:.1f}" height="{y_lo - y_hi:.1f}" '
                f'fill="{escape(colors.get(g, "#7a8fa6"))}" data-count="{c}" data-group="{escape(g)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            base += c
    out.append(_x_axis(lo, hi, sx, left, pw, top + ph, x_label, width))
    out.append(f'<line x1="{left}" x2="{left}" y1="{top}" y2="{top + ph}" stroke="{_AXIS}"/>')
    if threshold is not None and math.isfinite(threshold) and lo <= threshold <= hi:
        x = sx(threshold)
        anchor, dx = ("end", -4) if x > left + 0.75 * pw else ("start", 4)
        out.append(
            f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" '
            f'stroke="#222" stroke-width="1.5" stroke-dasharray="5 3" data-threshold="{threshold!r}"/>'
        )
        out.append(
            f'<text x="{x + dx:.1f}" y="{top + 11}" text-anchor="{anchor}" fill="#222">'
            f"threshold {escape(_fmt(threshold))}</text>"
        )
    if len(names) > 1:
        x = left
        for g in names:
            label = f"{g} ({sum(int(c) for c in counts_by_group[g])})"
            out.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{escape(colors.get(g, "#7a8fa6"))}"/>')
            out.append(f'<text x="{x + 14}" y="13" fill="#333">{escape(label)}</text>')
            x += 24 + 7 * len(label)
    out.append("</svg>")
    return "".join(out)


def curve(
    points_x: Sequence[float] | np.ndarray,
    points_y: Sequence[float] | np.ndarray,
    *,
    x_label: str,
    y_label: str,
    title: str,
    diagonal: bool = False,
    marker: tuple[float, float] | None = None,
    width: int = 320,
    height: int = 300,
) -> str:
    """A line in the unit square (ROC, precision-recall), with an optional chance diagonal and operating-point dot."""
    xs, ys = downsample(np.asarray(points_x, dtype=np.float64), np.asarray(points_y, dtype=np.float64))
    left, right, top, bottom = 46, 14, 24, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(v: float) -> float:
        return left + min(max(v, 0.0), 1.0) * pw

    def sy(v: float) -> float:
        return top + ph - min(max(v, 0.0), 1.0) * ph

    out = [
        f'<svg class="plot curve" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" data-points="{len(xs)}" {_FONT}>',
        f"<title>{escape(title)}</title>",
        f'<text x="{left + pw / 2:.1f}" y="15" text-anchor="middle" font-weight="600" fill="#222">{escape(title)}</text>',
    ]
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    for t in ticks:
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="{_GRID}"/>')
        out.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{top}" y2="{top + ph}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 5}" y="{sy(t) + 3.5:.1f}" text-anchor="end" fill="{_AXIS}">{_fmt(t)}</text>')
        out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 14}" text-anchor="middle" fill="{_AXIS}">{_fmt(t)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="{_AXIS}"/>')
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#333">{escape(x_label)}</text>'
    )
    cy = top + ph / 2
    out.append(
        f'<text x="12" y="{cy:.1f}" text-anchor="middle" fill="#333" transform="rotate(-90 12 {cy:.1f})">'
        f"{escape(y_label)}</text>"
    )
    if diagonal:
        out.append(
            f'<line class="chance" x1="{sx(0):.1f}" y1="{sy(0):.1f}" x2="{sx(1):.1f}" y2="{sy(1):.1f}" '
            f'stroke="#999" stroke-dasharray="4 3"><title>chance</title></line>'
        )
    if len(xs):
        pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(xs, ys))
        out.append(f'<polyline points="{pts}" fill="none" stroke="#2b6cb0" stroke-width="2" stroke-linejoin="round"/>')
    if marker is not None and all(math.isfinite(v) for v in marker):
        mx, my = marker
        out.append(
            f'<circle class="marker" cx="{sx(mx):.1f}" cy="{sy(my):.1f}" r="5" fill="#d9534f" stroke="#fff" '
            f'stroke-width="1.5"><title>{escape(f"at the threshold: {x_label} {mx:.3f}, {y_label} {my:.3f}")}'
            f"</title></circle>"
        )
    out.append("</svg>")
    return "".join(out)


def downsample(xs: np.ndarray, ys: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points of a polyline, evenly spaced along its length so corners survive and both ends stay.

    Even spacing by index would squeeze the steep first part of a ROC curve into a few points.
    """
    n = min(len(xs), len(ys))
    xs, ys = xs[:n], ys[:n]
    if n <= max_points:
        return xs, ys
    steps = np.abs(np.diff(xs)) + np.abs(np.diff(ys))
    length = np.concatenate([[0.0], np.cumsum(np.nan_to_num(steps))])
    if length[-1] <= 0:
        idx = np.array([0, n - 1])
    else:
        targets = np.linspace(0.0, length[-1], max_points)
        idx = np.unique(np.clip(np.searchsorted(length, targets), 0, n - 1))
        idx = np.unique(np.concatenate([[0], idx, [n - 1]]))
    return xs[idx], ys[idx]


def _x_axis(lo: float, hi: float, sx, left: float, pw: float, y: float, label: str, width: int) -> str:
    parts = [f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{_AXIS}"/>']
    for t in _nice_ticks(lo, hi, 6):
        if lo <= t <= hi:
            x = sx(t)
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y:.1f}" y2="{y + 4:.1f}" stroke="{_AXIS}"/>')
            parts.append(f'<text x="{x:.1f}" y="{y + 15:.1f}" text-anchor="middle" fill="{_AXIS}">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{y + 31:.1f}" text-anchor="middle" fill="#333">{escape(label)}</text>')
    return "".join(parts)


def _nice_ticks(lo: float, hi: float, n: int) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi] with about n ticks."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo]
    raw = span / max(n, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [round(first + k * step, 12) for k in range(max(count, 0))]


def _fmt(v: float) -> str:
    """Short number text: 3 significant digits, no exponent for ordinary magnitudes."""
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
