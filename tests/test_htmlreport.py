"""The HTML report: one offline page, bounded thumbnails, histogram counts that add up, escaped paths."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_cli.io import svg
from ssd_cli.io.htmlreport import ReportItem, evaluate_report, score_report, thumbnail_uri
from ssd_cli.metrics import compute_metrics

_VOID = {"meta", "img", "br", "hr", "input", "link", "source", "wbr"}


class Collector(HTMLParser):
    """Every start tag with its attributes and the ids of the elements around it; checks nesting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.stack: list[tuple[str, str | None]] = []
        self.errors: list[str] = []
        self.text: dict[str, str] = {}

    def _ids(self) -> tuple[str, ...]:
        return tuple(i for _, i in self.stack if i)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a, self._ids()))
        if tag not in _VOID:
            self.stack.append((tag, a.get("id")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}, self._ids()))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1][0] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.stack and self.stack[-1][1]:
            self.text[self.stack[-1][1]] = self.text.get(self.stack[-1][1], "") + data

    def within(self, section: str, tag: str | None = None, cls: str | None = None) -> list[dict[str, str]]:
        return [
            a
            for t, a, ids in self.tags
            if section in ids and (tag is None or t == tag) and (cls is None or cls in a.get("class", "").split())
        ]


def parse(page: str) -> Collector:
    c = Collector()
    c.feed(page)
    c.close()
    assert c.errors == []
    assert c.stack == []
    return c


def _save(path: Path, size: tuple[int, int], colour: tuple[int, int, int], **kw) -> Path:
    Image.new("RGB", size, colour).save(path, **kw)
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 to display
    rotated = tmp_path / "rotated.jpg"
    im = Image.new("RGB", (300, 150), (30, 160, 60))
    im.paste((250, 250, 0), (0, 0, 40, 150))  # a yellow band on the stored left edge
    im.save(rotated, exif=exif.tobytes())
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)
    evil_dir = tmp_path / "<script>alert(1)"  # "/" cannot be in a file name
    evil_dir.mkdir()
    return {
        "red": _save(tmp_path / "red.png", (64, 48), (220, 30, 30)),
        "blue": _save(tmp_path / "blue.jpg", (640, 480), (20, 40, 210), quality=90),
        "grey": _save(tmp_path / "grey.png", (32, 32), (128, 128, 128)),
        "rotated": rotated,
        "corrupt": corrupt,
        "evil": _save(evil_dir / "x<script>y.png", (40, 40), (10, 200, 200)),
    }


def make_items(paths: list[Path | None], scores: list[float], threshold: float, truth: list[bool] | None = None) -> list[ReportItem]:
    order = np.argsort(-np.asarray(scores), kind="stable")
    rank = {int(i): r + 1 for r, i in enumerate(order)}
    items = [
        ReportItem(
            path=p,
            index=i,
            score=s,
            normalised=s / threshold,
            anomalous=s > threshold,
            rank=rank[i],
            truth=None if truth is None else truth[i],
        )
        for i, (p, s) in enumerate(zip(paths, scores))
    ]
    return sorted(items, key=lambda it: it.rank)


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/jpeg;base64,")
    im = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    im.load()
    assert im.format == "JPEG"
    return im


def data_counts(c: Collector, section: str) -> tuple[int, int, dict[str, int]]:
    svgs = c.within(section, "svg")
    assert len(svgs) == 1
    bars = [a for a in c.within(section, "rect") if "data-count" in a]
    by_group: dict[str, int] = {}
    for a in bars:
        by_group[a["data-group"]] = by_group.get(a["data-group"], 0) + int(a["data-count"])
    return int(svgs[0]["data-total"]), sum(by_group.values()), by_group


def assert_offline(page: str, c: Collector) -> None:
    assert "http://" not in page and "https://" not in page
    for tag, a, _ in c.tags:
        if "src" in a:
            assert a["src"].startswith("data:image/jpeg;base64,"), (tag, a["src"][:40])
        assert tag not in ("script", "link", "iframe")


# ---------------------------------------------------------------- thumbnails


def test_thumbnail_is_a_small_jpeg(files: dict[str, Path]) -> None:
    uri = thumbnail_uri(files["blue"], px=96)
    assert uri is not None
    im = decode(uri)
    assert max(im.size) <= 96 and im.size == (96, 72)
    assert np.asarray(im)[..., 2].mean() > 150  # still blue
    assert len(uri) < 10_000


def test_thumbnail_follows_exif_orientation(files: dict[str, Path]) -> None:
    im = decode(thumbnail_uri(files["rotated"], px=160))
    assert im.size == (80, 160)  # stored 300x150, displayed upright
    top = np.asarray(im)[:10].mean(axis=(0, 1))
    assert top[2] < 100 and top[0] > 180  # the stored left band is now at the top (orientation 6)


def test_unreadable_files_give_no_thumbnail(files: dict[str, Path], tmp_path: Path) -> None:
    assert thumbnail_uri(files["corrupt"]) is None
    assert thumbnail_uri(tmp_path / "missing.png") is None
    assert thumbnail_uri(tmp_path) is None  # a folder


def test_heatmap_overlay_is_coloured_on_the_threshold_scale(files: dict[str, Path]) -> None:
    plain = np.asarray(decode(thumbnail_uri(files["grey"], px=64)), dtype=float)
    asked: list[tuple[int, int]] = []

    def heat(wh: tuple[int, int]) -> np.ndarray:  # hot top-left corner, unseen (NaN) bottom-right, low elsewhere
        asked.append(wh)
        m = np.full((wh[1], wh[0]), 0.3, dtype=np.float32)
        m[:16, :16], m[-16:, -16:] = 3.0, np.nan
        return m

    tinted = np.asarray(decode(thumbnail_uri(files["grey"], px=64, heatmap=heat, threshold=1.0)), dtype=float)
    assert asked == [(64, 64)] and tinted.shape == plain.shape  # the map is asked at the thumbnail's size
    hot, low, unseen = tinted[2:12, 2:12], tinted[26:38, 26:38], tinted[-10:, -10:]
    assert hot[..., 0].mean() - hot[..., 2].mean() > 60  # warm above the threshold
    assert low[..., 2].mean() - low[..., 0].mean() > 30  # cold below it
    assert np.abs(unseen - plain[-10:, -10:]).max() < 12  # nothing over what the model did not see (JPEG noise only)
    cooled = np.asarray(decode(thumbnail_uri(files["grey"], px=64, heatmap=heat, threshold=10.0)), dtype=float)
    assert cooled[2:12, 2:12, 2].mean() > cooled[2:12, 2:12, 0].mean()  # 3.0 is below a threshold of 10: cold


# ---------------------------------------------------------------- svg


def test_bins_hold_every_finite_score_and_reach_the_threshold() -> None:
    scores = np.array([0.1, 0.2, 0.2, 0.5, 0.9, np.nan])
    edges, counts = svg.bin_scores(scores, None, n_bins=10, threshold=2.0)
    assert sum(counts["images"]) == 5 and len(counts["images"]) == 10
    assert edges[0] <= 0.1 and edges[-1] > 2.0
    edges, counts = svg.bin_scores(scores[:5], None, n_bins=10)
    assert counts["images"][-1] == 1 and edges[-1] == 0.9  # the max falls in the last bin
    edges, counts = svg.bin_scores(np.full(7, 3.0), {"a": np.ones(7, bool), "b": np.zeros(7, bool)}, n_bins=5)
    assert sum(counts["a"]) == 7 and sum(counts["b"]) == 0 and edges[0] < 3.0 < edges[-1]


def test_curve_downsampling_keeps_the_ends_and_the_corner() -> None:
    x = np.concatenate([np.zeros(5000), np.linspace(0, 1, 5000)])
    y = np.concatenate([np.linspace(0, 1, 5000), np.ones(5000)])
    xs, ys = svg.downsample(x, y)
    assert len(xs) <= svg.MAX_CURVE_POINTS
    assert (xs[0], ys[0]) == (0, 0) and (xs[-1], ys[-1]) == (1, 1)
    assert np.min(np.hypot(xs, ys - 1)) < 0.01  # the corner at (0, 1) survives
    page = svg.curve(x, y, x_label="fpr", y_label="tpr", title="ROC", diagonal=True, marker=(0.2, 0.9))
    c = parse(page)
    assert len([1 for t, _, _ in c.tags if t == "circle"]) == 1
    assert int(c.tags[0][1]["data-points"]) <= svg.MAX_CURVE_POINTS


# ---------------------------------------------------------------- score report


def test_score_report(files: dict[str, Path]) -> None:
    names = ["red", "blue", "grey", "rotated", "corrupt", "evil"]
    paths: list[Path | None] = [files[n] for n in names] + [None]
    scores = [2.5, 0.4, 0.2, 1.6, 3.0, 0.9, 0.1]
    items = make_items(paths, scores, threshold=1.0)
    items[3] = ReportItem(**{**items[3].__dict__, "heatmap": lambda wh: np.full((wh[1], wh[0]), 2.0, dtype=np.float32)})
    skipped = [(f"/data/bad{i}.png", "unreadable image (truncated)") for i in range(205)]
    page = score_report(
        items, title="Scores of <my> folder", facts=[("model", "m.ssd"), ("network", "<net & co>")],
        threshold=1.0, threshold_rule="99th percentile of training scores", skipped=skipped,
        gallery=4, normal_strip=3, thumb_px=64, tool_version="0.2.0",
    )  # fmt: skip
    c = parse(page)
    assert_offline(page, c)
    for section in ("summary", "histogram", "gallery", "normals"):
        assert any(a.get("id") == section for t, a, _ in c.tags if t == "section")
    assert c.text["n-scored"] == "7" and c.text["n-flagged"] == "3" and c.text["n-skipped"] == "205"
    assert "ssd 0.2.0" in page and "99th percentile of training scores" in page
    assert "Scores of &lt;my&gt; folder" in page and "&lt;net &amp; co&gt;" in page
    assert page.count("<li>") == 200 and "and 5 more" in page

    total, summed, groups = data_counts(c, "histogram")
    assert total == summed == 7 and set(groups) == {"images"}
    assert len(c.within("histogram", "line", "threshold")) == 1

    cards = c.within("gallery", cls="card")
    assert [int(a["data-rank"]) for a in cards] == [1, 2, 3, 4]
    assert [float(a["data-score"]) for a in cards] == [3.0, 2.5, 1.6, 0.9]
    assert "showing top 4 of 7" in page.lower()
    assert len(c.within("gallery", cls="legend")) == 1  # one card carries a map: the colour scale is explained
    normals = c.within("normals", cls="card")
    assert [float(a["data-score"]) for a in normals] == [0.1, 0.2, 0.4]

    # rank 1 is the corrupt file: a card, but no picture
    assert c.within("gallery", "img") and len(c.within("gallery", "img")) == 3
    assert "no preview" in page and "image #6" in page  # the in-memory image
    for a in c.within("gallery", "img") + c.within("normals", "img"):
        assert max(decode(a["src"]).size) <= 64

    # the path with <script> in it stays text
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)/x&lt;script&gt;y.png" in page
    assert not [t for t, _, _ in c.tags if t == "script"]


def test_score_report_sizes_stay_bounded(files: dict[str, Path]) -> None:
    n = 5000
    rng = np.random.default_rng(0)
    pool = [files["red"], files["blue"], files["grey"], files["rotated"]]
    scores = rng.gamma(2.0, 1.0, n).tolist()
    items = make_items([pool[i % 4] for i in range(n)], scores, threshold=5.0)
    page = score_report(items, title="big", facts=[], threshold=5.0, threshold_rule="fixed", tool_version="0")
    c = parse(page)
    imgs = [a for t, a, _ in c.tags if t == "img"]
    assert len(imgs) <= 48 + 12
    assert len(c.within("gallery", cls="card")) == 48 and len(c.within("normals", cls="card")) == 12
    total, summed, _ = data_counts(c, "histogram")
    assert total == summed == n
    assert c.text["n-flagged"] == str(sum(s > 5.0 for s in scores))
    assert "showing top 48 of 5000" in page.lower()
    assert 'id="heat-legend"' not in page  # no maps, no colour scale
    assert len(page.encode()) < 1_000_000


# ---------------------------------------------------------------- evaluate report


def test_evaluate_report(files: dict[str, Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 40
    truth = [i % 4 == 0 for i in range(n)]  # 10 anomalies
    scores = [float(rng.normal(3.0 if t else 1.0, 0.7)) for t in truth]
    lowest_anomaly = min((s, i) for i, (s, t) in enumerate(zip(scores, truth)) if t)[1]
    highest_normal = max((s, i) for i, (s, t) in enumerate(zip(scores, truth)) if not t)[1]
    paths: list[Path | None] = [_save(tmp_path / f"e{i}.png", (24, 24), (i * 6, 100, 250 - i * 6)) for i in range(n)]
    threshold = 2.0
    items = make_items(paths, scores, threshold, truth)
    s, y = np.array(scores), np.array(truth)
    model = compute_metrics(s, y, threshold)
    points = [("model threshold", model), ("recall >= 0.95", compute_metrics(s, y, float(np.sort(s[y])[0]) - 1e-9))]
    page = evaluate_report(
        items, title="eval", facts=[("data", "test")], threshold=threshold, threshold_rule="fixed",
        auroc=model.auroc, auprc=model.auprc, points=points, gallery=5, misses=3, thumb_px=48, tool_version="0.2.0",
    )  # fmt: skip
    c = parse(page)
    assert_offline(page, c)
    assert c.text["n-scored"] == "40" and c.text["n-anomalous"] == "10" and c.text["n-normal"] == "30"
    assert c.text["n-tp"] == str(model.tp) and c.text["n-fp"] == str(model.fp)
    assert c.text["n-tn"] == str(model.tn) and c.text["n-fn"] == str(model.fn)
    assert c.text["auroc"] == f"{model.auroc:.4f}"

    total, summed, groups = data_counts(c, "histogram")
    assert total == summed == 40 and groups == {"normal": 30, "anomalous": 10}

    curves = c.within("curves", "svg")
    assert len(curves) == 2 and len(c.within("curves", "polyline")) == 2
    assert len(c.within("curves", "circle")) == 2 and len(c.within("curves", "line", "chance")) == 1

    assert len(c.within("points", "tr")) == 1 + len(points)
    assert "ssd score --threshold" in page and "recall &gt;= 0.95" in page

    assert len(c.within("gallery", cls="card")) == 5
    missed = [int(a["data-index"]) for a in c.within("missed-anomalies", cls="card")]
    alarms = [int(a["data-index"]) for a in c.within("false-alarms", cls="card")]
    assert len(missed) == 3 and missed[0] == lowest_anomaly and all(truth[i] for i in missed)
    assert len(alarms) == 3 and alarms[0] == highest_normal and not any(truth[i] for i in alarms)
    assert len(c.within("misses", "img")) == 6
    assert re.search(r"ssd 0\.2\.0 · generated <time datetime=\"\d{4}-\d\d-\d\dT[\d:]+\+00:00\"", page)


def test_evaluate_report_with_one_class_has_no_curves(files: dict[str, Path]) -> None:
    items = make_items([files["red"], files["grey"]], [0.5, 2.0], 1.0, [False, False])
    m = compute_metrics(np.array([0.5, 2.0, 3.0]), np.array([False, False, True]), 1.0)  # any metrics object
    page = evaluate_report(
        items, title="t", facts=[], threshold=1.0, threshold_rule="fixed", auroc=float("nan"), auprc=float("nan"),
        points=[("model threshold", m)], tool_version="0",
    )  # fmt: skip
    c = parse(page)
    assert not c.within("curves", "svg") and "both normal and anomalous" in page
    assert c.within("missed-anomalies", cls="card") == [] and len(c.within("false-alarms", cls="card")) == 2
