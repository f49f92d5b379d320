"""The Python API: `from ssd_cli import Detector`, on folders, files, PIL images and arrays, and
that the CLI gives exactly the API's scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import ssd_cli
from ssd_cli import Detector, Scores, SsdError
from ssd_cli.cli import app
from ssd_cli.errors import InputError, UsageError
from ssd_cli.core.scoring import Scorer

runner = CliRunner()


@pytest.fixture(scope="module")
def detector(sample_model) -> Detector:
    return Detector(sample_model, device="cpu")


def test_public_surface_is_lazy_and_listed() -> None:
    assert {"Detector", "Scores", "ScoreResult", "Evaluation", "SsdError", "FIT_SETTINGS"} <= set(ssd_cli.__all__)
    assert ssd_cli.Detector is Detector
    with pytest.raises(AttributeError):
        ssd_cli.NoSuchThing  # noqa: B018


def test_settings_live_in_the_constructor_as_in_scikit_learn() -> None:
    """get_params / set_params as scikit-learn's estimators have them: a copy made from the params
    is the same detector, unknown names and values of the wrong kind fail at once."""
    det = Detector(epochs=3, resize="crop", device="cpu")
    params = det.get_params()
    assert set(params) == {"device", *ssd_cli.FIT_SETTINGS}
    assert (params["device"], params["epochs"], params["resize"], params["arch"]) == ("cpu", 3, "crop", None)
    assert Detector(**params).get_params() == params
    assert det.set_params(epochs=4, seed=7) is det and det.get_params()["epochs"] == 4 and det.get_params()["resize"] == "crop"
    with pytest.raises(UsageError, match=r"unknown setting\(s\) epoch; known: arch, decoder"):
        Detector(epoch=3)
    with pytest.raises(UsageError, match=r"unknown setting\(s\) pretrain_batch_size; known: "):
        det.set_params(pretrain_batch_size=8)
    with pytest.raises(UsageError, match="resize must be one of squash, crop, pad, got 'squish'"):
        Detector(resize="squish")
    assert det.get_params()["epochs"] == 4  # a refused change changes nothing
    with pytest.raises(TypeError):
        det.set_params(device=0)


class _Planned(Exception):
    """Raised from on_plan (or in place of the planner): the request or plan is all a test wants."""


def test_settings_given_to_fit_still_work_with_a_deprecation_warning(sample_dir: Path) -> None:
    det = Detector(device="cpu", epochs=5)
    plans: list = []

    def stop(plan) -> None:
        plans.append(plan)
        raise _Planned

    with pytest.warns(DeprecationWarning, match=r"fit\(epochs=\.\.\., seed=\.\.\.\) is deprecated: give the settings to Detector") as caught:
        with pytest.raises(_Planned):
            det.fit(sample_dir / "normal", epochs=2, seed=3, on_plan=stop)
    assert caught[0].filename == __file__  # it points at the caller of fit
    assert plans[0].cfg.optim.epochs == 2 and plans[0].request.seed == 3
    assert det.get_params()["epochs"] == 2  # as set_params
    with pytest.raises(UsageError, match="unknown setting"), pytest.warns(DeprecationWarning):
        det.fit(sample_dir / "normal", epoch=2)


def test_ssd_train_and_detector_fit_build_the_same_request(sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One typed door: the command and the API hand the engine equal TrainRequests."""
    from ssd_cli import api, engine

    requests = []

    def planner(request, **kwargs):
        requests.append(request)
        raise _Planned

    monkeypatch.setattr(engine, "plan_training", planner)
    monkeypatch.setattr(api, "plan_training", planner)
    runner.invoke(app, ["train", "-u", str(sample_dir / "normal"), "--anomalies", str(sample_dir / "anomalies"), "--epochs", "3",
                        "--pretrain-lr", "0.001", "--lr-milestones", "2", "--resize", "crop", "--synthetic", "scar,perlin",
                        "--batch-size", "16", "--patch-size", "0", "--threshold-from", "quantile", "--device", "cpu"])  # fmt: skip
    settings = dict(epochs=3, pretrain_lr=0.001, lr_milestones=[2], resize="crop", synthetic="scar,perlin", batch_size=16, patch_size=0, threshold_from="quantile")
    with pytest.raises(_Planned):
        Detector(device="cpu", **settings).fit(sample_dir / "normal", anomalies=sample_dir / "anomalies")
    assert len(requests) == 2 and requests[0] == requests[1]
    assert requests[0].train.epochs == 3 and requests[0].pretrain.lr == 0.001 and requests[0].pretrain.batch_size == 16


def test_score_a_folder_gives_every_image(detector: Detector, sample_dir: Path) -> None:
    """The internal score_all([folder]) silently returned nothing; a folder must give all its images."""
    scores = detector.score(sample_dir / "incoming")
    assert isinstance(scores, Scores) and len(scores) == 100
    assert scores.skipped == []
    assert all(r.path is not None and r.path.parent == sample_dir / "incoming" for r in scores)
    assert sorted(r.rank for r in scores) == list(range(1, 101))
    assert scores.anomalous.tolist() == [s > detector.threshold_ for s in scores.scores]
    assert np.allclose([r.normalised for r in scores], scores.scores / detector.threshold_)
    # same as the engine's scorer on the decoded images
    files = sorted((sample_dir / "incoming").glob("*.png"))
    assert [r.path for r in scores] == files


def test_pil_images_arrays_and_files_score_the_same(detector: Detector, sample_dir: Path, sample_images) -> None:
    files = sorted((sample_dir / "incoming").glob("*.png"))[:6]
    by_file = detector.decision_function([str(f) for f in files])
    pil = [Image.open(f) for f in files]
    arrays = np.stack([np.asarray(im) for im in pil])  # N x 28 x 28 uint8
    assert np.array_equal(detector.decision_function(pil), by_file)
    assert np.array_equal(detector.decision_function(arrays), by_file)
    assert np.array_equal(detector.decision_function(arrays.astype(np.float32) / 255.0), by_file)
    assert np.array_equal(detector.decision_function(list(arrays)), by_file)
    # a uint8 tensor at the model's input is taken as it is
    tensor = torch.from_numpy(arrays[:, None])
    assert np.array_equal(detector.decision_function(tensor), by_file)
    expected = Scorer(detector.model_, torch.device("cpu")).score(sample_images.incoming[:6]).numpy()
    assert np.allclose(by_file, expected)
    # mixed inputs keep their order; in-memory ones have no path
    mixed = detector.score([files[0], pil[1], files[2]])
    assert [r.path for r in mixed] == [files[0], None, files[2]]
    assert np.allclose(mixed.scores, by_file[:3], rtol=1e-6)  # batches of other sizes: float rounding only


def test_a_colour_array_is_converted_like_a_colour_file(detector: Detector, tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    assert np.array_equal(detector.decision_function(rgb), detector.decision_function(tmp_path / "c.png"))


def test_predict_and_threshold_rules(detector: Detector, sample_dir: Path) -> None:
    folder = sample_dir / "incoming"
    scores = detector.decision_function(folder)
    assert detector.predict(folder).tolist() == (scores > detector.threshold_).tolist()
    assert detector.predict(folder, top_k=7).sum() == 7
    assert detector.predict(folder, contamination=0.1).sum() == 10
    assert set(np.argsort(-scores)[:7]) == set(np.nonzero(detector.predict(folder, top_k=7))[0])
    assert detector.predict(folder, threshold=-1.0).all()
    with pytest.raises(UsageError, match="at most one"):
        detector.score(folder, threshold=1.0, top_k=3)
    with pytest.raises(UsageError):
        detector.score(folder, contamination=1.5)


def test_progress_callback_reaches_the_total(detector: Detector, sample_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    detector.score(sample_dir / "incoming", batch_size=32, on_progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 4 and seen[-1] == (100, 100)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_errors_are_exceptions_with_messages(detector: Detector, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no model yet"):
        Detector().score(tmp_path)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        detector.score(np.full((28, 28), 2.0))
    with pytest.raises(InputError, match="does not exist"):
        detector.score(tmp_path / "missing")
    with pytest.raises(InputError, match="cannot read images"):
        detector.score({"not": "images"})  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown setting"):
        Detector(epoch=3)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="could be read"):
        detector.score(tmp_path / "broken.png")
    assert issubclass(InputError, SsdError)


def test_unreadable_files_are_listed_not_raised(detector: Detector, sample_dir: Path, tmp_path: Path) -> None:
    good = sorted((sample_dir / "incoming").glob("*.png"))[:3]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    scores = detector.score([*good, tmp_path / "broken.png"])
    assert len(scores) == 3 and [s.path for s in scores.skipped] == [tmp_path / "broken.png"]


def test_evaluate_matches_the_metrics_by_hand(detector: Detector, sample_dir: Path, sample_images) -> None:
    from sklearn.metrics import roc_auc_score

    incoming = torch.as_tensor(sample_images.incoming)
    truth = torch.tensor(sample_images.truth)
    result = detector.evaluate(incoming[~truth], incoming[truth])
    all_scores = detector.decision_function(torch.cat([incoming[~truth], incoming[truth]]))
    y = np.r_[np.zeros(int((~truth).sum()), bool), np.ones(int(truth.sum()), bool)]
    assert result.metrics.auroc == pytest.approx(roc_auc_score(y, all_scores))
    assert [p.name for p in result.points] == ["threshold in use", "F1-best", "recall >= 0.95"]
    assert result.points[2].metrics.recall >= 0.95
    assert result.points[1].metrics.f1 >= max(result.points[0].metrics.f1, result.points[2].metrics.f1)
    with pytest.raises(InputError, match="both normal and anomalous"):
        detector.evaluate(incoming[~truth], [])


@pytest.mark.slow
def test_fit_save_load_and_the_cli_give_identical_scores(sample_dir: Path, tmp_path: Path) -> None:
    """Train with the API, save, and score with both the API and `ssd score`: the same numbers."""
    det = Detector(device="cpu", epochs=2, pretrain_epochs=2, seed=3).fit(sample_dir / "normal", anomalies=sample_dir / "anomalies")
    assert det.plan_ is not None and det.plan_.spec.name == "mnist"
    model = tmp_path / "api.safetensors"
    det.save(model)
    with pytest.raises(SsdError, match="already exists"):
        det.save(model)
    loaded = Detector.load(model, device="cpu")
    api = loaded.score(sample_dir / "incoming")
    assert np.array_equal(api.scores, det.decision_function(sample_dir / "incoming"))
    out = tmp_path / "cli.json"
    result = runner.invoke(app, ["score", str(model), str(sample_dir / "incoming"), "--output", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["scores"]
    assert {r["path"]: r["score"] for r in rows} == {str(r.path): r.score for r in api}
    assert loaded.info()["training"]["labeled_at_threshold"]["n_anomalous"] == 45


def test_a_report_of_in_memory_images_shows_their_thumbnails(detector: Detector, sample_images, tmp_path: Path) -> None:
    """PIL images and tensors have no file, but the report shows them as it shows files; the
    caller's images are left as they were."""
    pil = [Image.fromarray(a[0].numpy()) for a in sample_images.incoming[:3]]
    scores = detector.score([*pil, sample_images.incoming[3:5]])
    assert [r.path for r in scores] == [None] * 5
    scores.write(tmp_path / "r.html", gallery=5)
    page = (tmp_path / "r.html").read_text()
    assert "in-memory image" not in page  # what a card without a picture says
    assert page.count('src="data:image/jpeg;base64,') >= 5
    assert [im.size for im in pil] == [(28, 28)] * 3


def test_fit_on_in_memory_images(sample_images) -> None:
    """Arrays train through the same path as folders (written as PNG first), and give a model."""
    arrays = sample_images.normal[:60, 0].numpy()  # 60 x 28 x 28 uint8
    det = Detector(device="cpu", epochs=1, pretrain_epochs=1, batch_size=32).fit(list(arrays))
    assert det.model_ is not None and det.model_.training["n_unlabeled"] == 60
    assert det.model_.spec.channels == 1 and det.model_.input_size == 28
    assert det.predict(arrays[:5]).shape == (5,)


def test_scores_write_every_format_from_python(detector: Detector, sample_dir: Path, tmp_path: Path) -> None:
    scores = detector.score(sample_dir / "incoming", top_k=5)
    for name in ("s.csv", "s.json", "s.html"):
        scores.write(tmp_path / name)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "path,score,normalised_score,anomalous,rank"
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["n_flagged"] == 5 and "--top-k" in doc["threshold_rule"] and doc["tool_version"] == ssd_cli.__version__
    html = (tmp_path / "s.html").read_text()
    assert html.count('class="card') >= 5 and "data:image/jpeg;base64," in html
    with pytest.raises(SsdError, match="already exists"):
        scores.write(tmp_path / "s.csv")
    with pytest.raises(UsageError):
        scores.write(tmp_path / "s.txt")


# --- the API speaks Python --------------------------------------------------------------------


def test_a_wrong_argument_is_refused_at_once() -> None:
    """Detector("cpu") took "cpu" for the model and failed later with an AttributeError."""
    with pytest.raises(TypeError, match=r"Detector\(device='cpu'\)"):
        Detector("cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="device"):
        Detector(device=3)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="'tpu' is not a device"):
        Detector(device="tpu")


def test_errors_name_python_arguments_not_options(detector: Detector, sample_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        detector.score(sample_dir / "incoming", threshold=1, top_k=3)
    assert "threshold, top_k" in str(caught.value) and "--" not in str(caught.value)
    detector.save(tmp_path / "m.safetensors")
    with pytest.raises(SsdError) as caught:
        detector.save(tmp_path / "m.safetensors")
    assert "force=True" in str(caught.value) and "--force" not in str(caught.value)
    with pytest.raises(UsageError) as caught:
        Detector(seed=-1).fit(tmp_path)
    assert str(caught.value).startswith("seed must")
    with pytest.raises(UsageError, match=r"^batch_size must"):
        detector.predict(sample_dir / "incoming", batch_size=0)
    # the command still names its options
    result = runner.invoke(app, ["score", str(tmp_path / "m.safetensors"), str(sample_dir / "incoming"), "--threshold", "1", "--top-k", "3"])
    assert result.exit_code == 2 and "--threshold, --top-k" in result.output


def test_skipped_lists_every_file_training_left_out(detector: Detector, sample_dir: Path, tmp_path: Path) -> None:
    """Not only the files that failed to decode: non-images, links to nothing and FIFOs too, as
    Scores.skipped lists them."""
    import os
    import shutil

    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in sorted((sample_dir / "normal").glob("*.png"))[:12]:
        shutil.copy(f, folder)
    (folder / "notes.txt").write_text("not an image")
    (folder / "gone.png").symlink_to(tmp_path / "nothing.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    det = Detector(device="cpu", epochs=1, pretrain_epochs=0, batch_size=4).fit(folder)
    left_out = {s.path.name for s in det.skipped_}
    assert left_out == {"notes.txt", "gone.png", "pipe.png", "cut.png"}, det.skipped_
    assert left_out == {s.path.name for s in detector.score(folder).skipped}


def test_info_is_what_ssd_info_json_prints(sample_model, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    detector = Detector(sample_model, device="cpu")
    assert detector.info()["file"] is None  # not written yet
    detector.save(path)
    assert detector.info()["file"] == str(path)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(json.dumps(Detector.load(path).info())) == json.loads(result.output)
