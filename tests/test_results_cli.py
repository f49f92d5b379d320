"""`ssd score`/`evaluate` outputs a person uses: thresholds, the HTML report, the flagged folder,
`ssd info`, and the benchmark's guard against plans of many hours. Through the CLI runner."""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ssd_cli.cli import app
from ssd_cli.errors import ExitCode
from ssd_cli.io.modelfile import load_model

from conftest import ENV, ok, one_line_error, runner, ssd


@pytest.fixture(scope="module")
def model(sample_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("results") / "model.safetensors"
    ok(ssd("train", "-u", sample_dir / "normal", "--anomalies", sample_dir / "anomalies", "--epochs", 5, "--pretrain-epochs", 5, "--out", out, "--device", "cpu"))
    return out


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


class Tags(HTMLParser):
    """Every start tag with its attributes, for checking a report's content."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_contamination_and_top_k_flag_that_many(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    result = ssd("score", model, sample_dir / "incoming", "--contamination", 0.1, "--output", out, "--device", "cpu")
    ok(result)
    assert "100 images, 10 anomalous" in result.output and "--contamination" in result.output
    got = rows(out)
    assert sum(r["anomalous"] == "1" for r in got) == 10
    assert [r["anomalous"] for r in got[:10]] == ["1"] * 10  # the ten highest
    out2 = tmp_path / "k.csv"
    ok(ssd("score", model, sample_dir / "incoming", "--top-k", 7, "--output", out2, "--device", "cpu"))
    assert sum(r["anomalous"] == "1" for r in rows(out2)) == 7
    # the normalised score is above 1 exactly for the flagged
    assert all((float(r["normalised_score"]) > 1) == (r["anomalous"] == "1") for r in rows(out2))


def test_top_k_flags_exactly_k_when_duplicates_tie_at_the_cut(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    """Copies of one image score alike; a tie at the cut is split by rank (input order), never
    leaving fewer than K flagged, and the output says so."""
    folder = tmp_path / "dups"
    folder.mkdir()
    image = sorted((sample_dir / "incoming").glob("*.png"))[0]
    for i in range(5):
        (folder / f"copy-{i}.png").write_bytes(image.read_bytes())
    out = tmp_path / "k.csv"
    result = ssd("score", model, folder, "--top-k", 2, "--output", out, "--device", "cpu")
    ok(result)
    assert "5 images, 2 anomalous" in result.output and "tie" in result.output
    got = rows(out)
    assert [(Path(r["path"]).name, r["anomalous"]) for r in got] == [("copy-0.png", "1"), ("copy-1.png", "1"), ("copy-2.png", "0"), ("copy-3.png", "0"), ("copy-4.png", "0")]
    assert json.loads(ssd_json(model, folder, tmp_path, "--contamination", 0.5))["n_flagged"] == 3  # 0.5 x 5 = 2.5, rounded up


def ssd_json(model: Path, folder: Path, tmp_path: Path, *args: object) -> str:
    out = tmp_path / "s.json"
    ok(ssd("score", model, folder, *args, "--output", out, "--force", "--device", "cpu"))
    return out.read_text()


def test_contamination_states_its_rounding_and_means_the_decimal_product(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    """0.07 x 100 is 7.000000000000001 in floating point: rounding that up flagged 8, not 7."""
    out = json.loads(ssd_json(model, sample_dir / "incoming", tmp_path, "--contamination", 0.07))
    assert out["n_flagged"] == 7
    assert "0.07 x 100 = 7, rounded up to 7" in out["threshold_rule"]


def test_threshold_rules_conflict_and_bad_values_are_usage_errors(model: Path, sample_dir: Path) -> None:
    one_line_error(ssd("score", model, sample_dir / "incoming", "--top-k", 3, "--contamination", 0.1), ExitCode.USAGE, "at most one")
    one_line_error(ssd("score", model, sample_dir / "incoming", "--contamination", 2), ExitCode.USAGE, "--contamination")
    one_line_error(ssd("score", model, sample_dir / "incoming", "--report", "r.pdf"), ExitCode.USAGE, "--report")


def test_score_report_shows_counts_histogram_and_thumbnails(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    report, scores = tmp_path / "r.html", tmp_path / "s.csv"
    ok(ssd("score", model, sample_dir / "incoming", "--report", report, "--output", scores, "--gallery", 10, "--device", "cpu"))
    html = report.read_text(encoding="utf-8")
    found = tags(html)
    bars = [int(a["data-count"]) for t, a in found if t == "rect" and "data-count" in a]
    assert sum(bars) == 100  # every image in exactly one bin
    cards = [a for t, a in found if "card" in a.get("class", "").split()]
    gallery_ranks = [int(a["data-rank"]) for a in cards][:10]
    assert gallery_ranks == list(range(1, 11))
    images = [a["src"] for t, a in found if t == "img"]
    assert len(images) >= 10 and all(src.startswith("data:image/jpeg;base64,") for src in images)
    n_flagged = int(re.search(r'id="n-flagged"[^>]*>\s*(\d+)', html).group(1))
    assert n_flagged == sum(r["anomalous"] == "1" for r in rows(scores)) > 0
    assert int(re.search(r'id="n-scored"[^>]*>\s*(\d+)', html).group(1)) == 100
    assert "http://" not in html and "https://" not in html
    assert load_model(model).threshold_rule in html


def test_evaluate_points_round_trip_to_score(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    """The F1-best threshold that evaluate reports, passed to score --threshold, flags what it said."""
    out, report = tmp_path / "e.json", tmp_path / "e.html"
    result = ssd("evaluate", model, "--labels", sample_dir / "incoming_labels.csv", "--output", out, "--report", report, "--recall", 0.9, "--device", "cpu")
    ok(result)
    assert "F1-best" in result.output and "recall >= 0.9" in result.output
    doc = json.loads(out.read_text())
    points = {p["name"]: p for p in doc["operating_points"]}
    best = points["F1-best"]
    assert points["recall >= 0.9"]["recall"] >= 0.9
    assert len(doc["scores"]) == 100 and sum(r["is_anomaly"] for r in doc["scores"]) == 20
    scored = tmp_path / "s.csv"
    ok(ssd("score", model, sample_dir / "incoming", "--threshold", repr(best["threshold"]), "--output", scored, "--device", "cpu"))
    with open(sample_dir / "incoming_labels.csv", newline="") as f:
        truth = {(sample_dir / r["path"]).resolve(): r["label"] == "anomaly" for r in csv.DictReader(f)}
    flagged = [truth[Path(r["path"]).resolve()] for r in rows(scored) if r["anomalous"] == "1"]
    assert (sum(flagged), len(flagged) - sum(flagged)) == (best["tp"], best["fp"])
    html = report.read_text()
    assert 'id="curves"' in html and 'id="points"' in html and 'id="misses"' in html
    bars = [(a["data-group"], int(a["data-count"])) for t, a in tags(html) if t == "rect" and "data-count" in a]
    assert sum(c for g, c in bars if g == "anomalous") == 20 and sum(c for g, c in bars if g == "normal") == 80


def test_copy_and_link_flagged_files(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    copies, links = tmp_path / "copies", tmp_path / "links"
    result = ssd("score", model, sample_dir / "incoming", "--top-k", 5, "--copy-to", copies, "--device", "cpu")
    ok(result)
    names = sorted(p.name for p in copies.iterdir())
    assert len(names) == 5 and [n[:5] for n in names] == ["0001-", "0002-", "0003-", "0004-", "0005-"]
    assert all(not (copies / n).is_symlink() and (copies / n).read_bytes() == (sample_dir / "incoming" / n[5:]).read_bytes() for n in names)
    ok(ssd("score", model, sample_dir / "incoming", "--top-k", 3, "--link-to", links, "--device", "cpu"))
    assert all(p.is_symlink() and p.resolve().parent == (sample_dir / "incoming").resolve() for p in links.iterdir())
    # a folder with files in it is refused before any scoring, unless --force
    one_line_error(ssd("score", model, sample_dir / "incoming", "--copy-to", copies), ExitCode.OUTPUT_EXISTS, "not empty")
    one_line_error(ssd("score", model, sample_dir / "incoming", "--copy-to", copies, "--link-to", links), ExitCode.USAGE, "not both")
    ok(ssd("score", model, sample_dir / "incoming", "--top-k", 5, "--copy-to", copies, "--force", "--device", "cpu"))
    assert len(list(copies.iterdir())) == 5  # same names replaced, nothing left half-written
    assert not [p for p in copies.iterdir() if p.name.endswith(".part")]


def test_info_describes_models_and_autoencoders(model: Path, sample_dir: Path, tmp_path: Path) -> None:
    result = ssd("info", model)
    ok(result)
    for needle in ("mnist", "1x28x28", "one-class", "threshold", "400 unlabeled", "45 labeled anomalous", "|c| / R", "written by ssd"):
        assert needle in result.output, needle
    doc = json.loads(ssd("info", model, "--json").stdout)
    saved = load_model(model)
    assert doc["kind"] == "model" and doc["threshold"] == saved.threshold and doc["network"] == saved.spec.to_dict()
    assert doc["training"]["n_labeled_anomalous"] == 45 and doc["center_norm"] > 0
    ae = tmp_path / "ae.safetensors"
    ok(ssd("pretrain", "-u", sample_dir / "normal", "--epochs", 1, "--out", ae, "--device", "cpu"))
    doc = json.loads(ssd("info", ae, "--json").stdout)
    assert doc["kind"] == "autoencoder" and doc["training"]["epochs"] == 1 and "threshold" not in doc
    ok(ssd("info", ae))
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    one_line_error(ssd("info", tmp_path / "junk.safetensors"), ExitCode.BAD_MODEL)


@pytest.mark.slow
def test_a_long_benchmark_plan_is_not_started_without_asking(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The paper preset on all MNIST classes is many hours on a CPU: without a terminal it needs
    --yes; at a terminal the default answer is no. Either way nothing runs."""
    from ssd_cli.cli import benchmark as command

    args = ("benchmark", "mnist", "--data-root", data_root, "--out", tmp_path / "b", "--device", "cpu")
    result = ssd(*args)
    one_line_error(result, ExitCode.USAGE, "--yes")
    assert "--preset quick" in result.output and "--seeds 1" in result.output and "--classes 0" in result.output
    monkeypatch.setattr(command, "interactive", lambda: True)
    result = runner.invoke(app, [str(a) for a in args], input="\n", env=ENV)
    assert result.exit_code == 0 and "not started" in result.output
    assert not (tmp_path / "b" / "results.jsonl").exists()
