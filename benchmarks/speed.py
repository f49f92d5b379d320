"""Speed benchmark of ssd: training throughput against a re-creation of the research code's pipeline,
AUC parity, `ssd score` throughput and its peak memory. See docs/performance.md.

    .venv/bin/python benchmarks/speed.py --data-root ../shared/datasets

One run measures, on the same data, network, batch size and epochs:

1. MNIST class 0 (5,923 images), LeNet 'mnist': autoencoder pretraining and One-Class Deep SVDD,
   (a) research pipeline (PIL + per-sample transforms + DataLoader + per-batch loop, see
   research_pipeline.py) against (b) the engine (ssd_cli.core.training on preprocessed tensors).
2. The same for the CIFAR-10 network on 5,000 32x32 colour images (class 0 of the train split).
3. AUC parity: (a) and (b) One-Class Deep SVDD on MNIST from the same pretrained weights and seed,
   scored on the MNIST test split (class 0 normal).
4. Scoring: Detector.score over 5,000 28x28 PNGs and 5,000 32x32 JPEGs (decode included), and
   the peak RSS of `ssd score` subprocesses on those folders and on folders 10x larger.
5. Photo scoring (--only photos): Detector.score over 224x224 and 1024x768 JPEGs of real photos
   (native-resolution crops of scikit-image's bundled photos; CIFAR-10 mosaics without scikit-image)
   to the 32-px `cifar10` and the 128-px `lenet-128` network, and decoding alone at those sizes.
   Shrink it for a smoke test: --only photos --photo-n 20 --score-repeats 1.
6. ONNX (--only onnx; needs the export extra): each model exported by `ssd export`'s code and scored
   by onnxruntime on the CPU beside torch, on the same files and machine and with as many threads:
   28x28 PNGs (mnist), 32x32 JPEGs (cifar10), 128x128 JPEGs to a patch-level model (32 px patches at
   stride 16, the cifar10 network), end to end (ssd's decoding included in both) and the network
   alone on decoded images. With --device cuda and onnxruntime-gpu, also the CUDA provider.
   Shrink it for a smoke test: --only onnx --score-n 300 --photo-n 50 --score-repeats 1.

Scoring goes through the public `Detector` (load, score, export), as a user's would. Training
(1-3, --variants), the network-alone figures and the untrained models written to be scored use
ssd_cli.core directly: they time the training loops and the network themselves, which no public
entry point exposes apart from the decoding and planning around them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import research_pipeline as rp

from ssd_cli import Detector
from ssd_cli.io import modelfile

from ssd_cli.core import pipeline, training
from ssd_cli.core.config import Objective, OptimConfig, Preprocessing, TrainConfig
from ssd_cli.data.datasets import CIFAR10_JPEG_FOLDER, cifar10_source, load_builtin
from ssd_cli.core.model import SavedModel
from ssd_cli.core.scoring import Scorer
from ssd_cli.data.images import iter_image_batches, list_images, load_images
from ssd_cli.core.nets import AutoEncoder, Encoder, get_spec
from ssd_cli.core.patches import PatchSpec, grid_patches
from ssd_cli.core.preprocess import Preprocessor

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"mnist_one_class_ratio": 3.0, "cifar_one_class_ratio": 2.0, "score_png_ips": 5000.0, "score_jpeg_ips": 2500.0}


def log(msg: str = "") -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------------- machine


def machine_info(device: torch.device) -> dict:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "loadavg_start": os.getloadavg(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class CpuMonitor:
    """How much of the machine's CPU other processes used between start() and stop(), from /proc/stat
    minus this process's own CPU time (children included). Figures taken while others ran are low."""

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def _busy(self) -> float | None:
        try:
            f = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        idle = f[3] + (f[4] if len(f) > 4 else 0)
        return (sum(f[:8]) - idle) / self.tick

    def start(self) -> CpuMonitor:
        t = os.times()
        self.t0, self.busy0, self.own0 = time.perf_counter(), self._busy(), t.user + t.system + t.children_user + t.children_system
        return self

    def stop(self) -> float | None:
        """Share (0-1) of all cores' time used by other processes."""
        busy, t = self._busy(), os.times()
        if busy is None or self.busy0 is None:
            return None
        own = t.user + t.system + t.children_user + t.children_system - self.own0
        wall = time.perf_counter() - self.t0
        return max(0.0, (busy - self.busy0 - own) / (wall * (os.cpu_count() or 1)))


def section(res: dict, key: str, fn, *a) -> None:
    mon = CpuMonitor().start()
    res[key] = fn(*a)
    share = mon.stop()
    res[key]["foreign_cpu_share"] = share
    if share is not None:
        log(f"  [other processes used {100 * share:.0f}% of the machine's CPU during this section{'; figures are pessimistic' if share > 0.1 else ''}]")


# --------------------------------------------------------------------------------------------- timing


def summarise(times: list[float], warmup: int, n: int) -> dict:
    """Per-epoch seconds with the warm-up epochs dropped; s/epoch is their median (robust to a
    neighbour's burst), images/s follows from it; the fastest epoch is kept too."""
    timed = times[warmup:] or times
    med = statistics.median(timed)
    return {
        "epoch_seconds": [round(t, 4) for t in times],
        "warmup_epochs": warmup,
        "s_per_epoch": med,
        "s_per_epoch_min": min(timed),
        "images_per_s": n / med,
        "images_per_s_best": n / min(timed),
    }


def engine_epochs(run) -> list[float]:
    times: list[float] = []
    run(lambda info: times.append(info.seconds))
    return times


def research_epochs(run) -> list[float]:
    times: list[float] = []
    run(lambda epoch, loss, seconds: times.append(seconds))
    return times


def optim(epochs: int, batch_size: int) -> OptimConfig:
    # Same optimiser for every run, both pipelines: Adam lr 1e-4, wd 1e-6, no lr step inside the run.
    return OptimConfig(epochs=epochs, lr=1e-4, lr_milestones=(), weight_decay=1e-6, batch_size=batch_size)


def compare_training(spec, x: torch.Tensor, y: torch.Tensor, dataset, indices, device: torch.device, args, epochs: int) -> dict:
    """AE pretraining and One-Class Deep SVDD, research (a) vs engine (b), same init, data and epochs."""
    n, bs, warm, total = len(x), args.batch_size, args.warmup, args.warmup + epochs
    out: dict = {"n_images": n, "timed_epochs": epochs}
    loader = rp.train_loader(dataset, indices, bs, seed=args.seed)
    out["research_loader_only_s"] = rp.time_loader(loader)
    log(f"  research input pipeline alone (one pass, no network): {out['research_loader_only_s']:.2f} s")

    # -- autoencoder pretraining, both from the same seeded initial weights
    ae_research = training.seeded_init(lambda: AutoEncoder(spec), args.seed)
    t = research_epochs(lambda hook: rp.train_autoencoder(ae_research, loader, device, total, on_epoch=hook))
    out["ae_research"] = summarise(t, warm, n)
    log(f"  AE        (a) research: {out['ae_research']['s_per_epoch']:.2f} s/epoch  epochs {[round(s, 2) for s in t]}")
    ae_engine: list = []

    def run_engine_ae(hook):
        ae, _ = pipeline.pretrain(spec, x, optim(total, bs), seed=args.seed, on_epoch=hook)
        ae_engine.append(ae)

    t = engine_epochs(run_engine_ae)
    out["ae_engine"] = summarise(t, warm, n)
    out["ae_ratio"] = out["ae_engine"]["images_per_s"] / out["ae_research"]["images_per_s"]
    log(f"  AE        (b) engine:   {out['ae_engine']['s_per_epoch']:.2f} s/epoch  epochs {[round(s, 2) for s in t]}  -> b/a {out['ae_ratio']:.2f}x")

    # -- One-Class Deep SVDD, both from the engine's pretrained encoder weights
    pretrained = ae_engine[0]
    enc_research = pipeline.initial_encoder(spec, pretrained, args.seed, torch.device("cpu"))
    enc_research.to(device)
    c_research = rp.init_center_c(enc_research, loader, device, spec.rep_dim)
    t = research_epochs(lambda hook: rp.train_one_class(enc_research, loader, c_research, device, total, on_epoch=hook))
    out["oc_research"] = summarise(t, warm, n)
    log(f"  One-Class (a) research: {out['oc_research']['s_per_epoch']:.2f} s/epoch  epochs {[round(s, 2) for s in t]}")
    enc_engine = pipeline.initial_encoder(spec, pretrained, args.seed, device)
    cfg = TrainConfig(objective=Objective.ONE_CLASS, optim=optim(total, bs))
    result: list = []
    t = engine_epochs(lambda hook: result.append(training.train_deep_svdd(enc_engine, x, y, cfg, seed=args.seed, on_epoch=hook)))
    out["oc_engine"] = summarise(t, warm, n)
    out["oc_ratio"] = out["oc_engine"]["images_per_s"] / out["oc_research"]["images_per_s"]
    log(f"  One-Class (b) engine:   {out['oc_engine']['s_per_epoch']:.2f} s/epoch  epochs {[round(s, 2) for s in t]}  -> b/a {out['oc_ratio']:.2f}x")
    # If the engine only removed the research input pipeline and ran the same network step, b/a would be
    # research epoch / (research epoch - loader pass): the Amdahl bound of "tensors instead of PIL".
    for key in ("ae", "oc"):
        r = out[f"{key}_research"]["s_per_epoch"]
        out[f"{key}_pipeline_only_bound"] = r / max(r - out["research_loader_only_s"], 1e-9)
    log(f"  (removing only the input pipeline would give at most {out['ae_pipeline_only_bound']:.2f}x (AE), {out['oc_pipeline_only_bound']:.2f}x (One-Class))")
    out["_models"] = (enc_research, c_research, enc_engine, result[0].c, pretrained)
    return out


# --------------------------------------------------------------------------------------------- MNIST


def bench_mnist(root: Path, device: torch.device, args) -> dict:
    log(f"\n== MNIST class 0, LeNet 'mnist', batch {args.batch_size}, {args.warmup} warm-up + {args.epochs} timed epochs")
    spec = get_spec("mnist")
    data = load_builtin("mnist", root, train=True)
    idx = torch.nonzero(data.labels == 0).squeeze(1)
    imgs = data.images[idx]
    pre = Preprocessor.fit(Preprocessing.GCN, imgs)
    start = time.perf_counter()
    x, y = pipeline.training_tensors(pre, device, imgs)
    setup = time.perf_counter() - start
    log(f"  {len(x)} images; engine one-off preprocessing to tensors: {setup:.3f} s ({pre.describe()})")
    transform = rp.research_transform(pre.low, pre.high, 1)
    dataset = rp.ResearchMNIST(str(root), train=True, transform=transform, target_transform=rp.outlier_target(0), download=False)
    out = compare_training(spec, x, y, dataset, idx.tolist(), device, args, args.epochs)
    out["engine_setup_s"] = setup
    enc_r, c_r, enc_e, c_e, ae = out.pop("_models")

    # -- AUC parity on the test split (class 0 normal, the other nine anomalous)
    test = load_builtin("mnist", root, train=False)
    is_anomaly = (test.labels != 0).numpy()
    from sklearn.metrics import roc_auc_score

    test_set = rp.ResearchMNIST(str(root), train=False, transform=transform, target_transform=rp.outlier_target(0), download=False)
    start = time.perf_counter()
    s_r, labels_r = rp.test_scores(enc_r, rp.test_loader(test_set, args.batch_size), c_r, device)
    t_r = time.perf_counter() - start
    start = time.perf_counter()
    x_test, _ = pipeline.training_tensors(pre, device, test.images)
    s_e = training.distances(enc_e, c_e, x_test).cpu().numpy()
    t_e = time.perf_counter() - start
    out["auc"] = {
        "epochs": args.warmup + args.epochs,
        "research": float(roc_auc_score(labels_r == 1, s_r)),  # targets are already 1 = outlier
        "engine": float(roc_auc_score(is_anomaly, s_e)),
        "c_max_abs_diff": float((c_r - c_e).abs().max()),
        "test_seconds_research": t_r,
        "test_seconds_engine": t_e,
    }
    a = out["auc"]
    log(
        f"  AUC parity after {a['epochs']} epochs each from the same pretrained weights: research {a['research']:.4f}, "
        f"engine {a['engine']:.4f} (|c_a - c_b| max {a['c_max_abs_diff']:.2g}); test pass {t_r:.2f} s vs {t_e:.2f} s"
    )
    out["_ctx"] = {"spec": spec, "x": x, "y": y, "ae": ae, "c": c_e, "x_test": x_test, "is_anomaly": is_anomaly}
    return out


# --------------------------------------------------------------------------------------------- CIFAR-10


def cifar_class0(root: Path, n: int) -> torch.Tensor:
    """The first n training images of class 0 (airplane) as uint8 (N, 3, 32, 32)."""
    if cifar10_source(root) == "jpeg":
        files = sorted((root / CIFAR10_JPEG_FOLDER / "train" / "airplane").glob("*.jpg"))[:n]
        return load_images(files, 32, 3).images
    data = load_builtin("cifar10", root, train=True)
    return data.images[data.labels == 0][:n]


def bench_cifar(root: Path, device: torch.device, args) -> dict:
    log(f"\n== CIFAR-10 class 0, LeNet 'cifar10', batch {args.batch_size}, {args.warmup} warm-up + {args.cifar_epochs} timed epochs")
    spec = get_spec("cifar10")
    imgs = cifar_class0(root, args.cifar_n)
    pre = Preprocessor.fit(Preprocessing.GCN, imgs)
    start = time.perf_counter()
    x, y = pipeline.training_tensors(pre, device, imgs)
    setup = time.perf_counter() - start
    log(f"  {len(x)} images; engine one-off preprocessing to tensors: {setup:.3f} s ({pre.describe()})")
    arrays = imgs.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8, as torchvision's CIFAR10 holds it
    dataset = rp.ResearchCIFAR10(arrays, [0] * len(arrays), rp.research_transform(pre.low, pre.high, 3), rp.outlier_target(0))
    out = compare_training(spec, x, y, dataset, range(len(arrays)), device, args, args.cifar_epochs)
    *_, c_e, ae = out.pop("_models")
    out["engine_setup_s"] = setup
    out["_ctx"] = {"spec": spec, "x": x, "y": y, "ae": ae, "c": c_e, "pre": pre, "root": root}
    return out


# --------------------------------------------------------------------------------------------- scoring


def write_pngs(images: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, im in enumerate(images.numpy()):
        Image.fromarray(im[0]).save(folder / f"{i:05d}.png")


def write_jpegs(images: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, im in enumerate(images.permute(0, 2, 3, 1).numpy()):
        Image.fromarray(im).save(folder / f"{i:05d}.jpg", quality=75)


def replicate(src: Path, dst: Path, times: int) -> None:
    """dst/rep{k}/<file> for every file of src, as hard links where possible (copies otherwise)."""
    files = sorted(p for p in src.iterdir() if p.is_file())
    for k in range(times):
        sub = dst / f"rep{k:02d}"
        sub.mkdir(parents=True)
        for f in files:
            try:
                os.link(f, sub / f.name)
            except OSError:
                shutil.copyfile(f, sub / f.name)


def untrained_model(arch: str, images: torch.Tensor, path: Path, patch: PatchSpec | None = None) -> None:
    """An untrained network saved through ssd_cli.io.modelfile: scoring cost does not depend on the
    weights. With `patch`, a patch-level model of images at patch.image_size."""
    spec = get_spec(arch)
    pre = Preprocessor.fit(Preprocessing.GCN, images)
    enc = training.seeded_init(lambda: Encoder(spec), 0)
    x = pre(images[:500]) if patch is None else grid_patches(pre(images[:20]), patch).flatten(0, 1)
    c = training.embed(enc, x.contiguous()).mean(0)
    saved = SavedModel(
        spec=spec, objective=Objective.ONE_CLASS, nu=0.1, eta=1.0, preprocessor=pre, c=c, radius=0.0,
        threshold=1e30, threshold_rule="benchmark (untrained)", encoder_state=enc.state_dict(),  # finite: files refuse inf
        training={"note": "untrained network written by benchmarks/speed.py"}, patch=patch,
    )
    modelfile.save_model(path, saved, force=True)


def time_scoring(model: Path, folder: Path, device: torch.device, repeats: int, workers: int | None) -> dict:
    """`Detector.score` over the listed files, as `ssd score` scores them (decode included)."""
    det = Detector.load(model, device=str(device))
    start = time.perf_counter()
    files = list_images([folder]).files
    list_s = time.perf_counter() - start
    det.score(files[:512], workers=workers)  # warm-up: thread pool, allocator, kernels
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = len(det.score(files, workers=workers))
        runs.append(time.perf_counter() - start)
    assert n == len(files), f"scored {n} of {len(files)} files"
    best = min(runs)
    return {"n_files": len(files), "list_s": list_s, "score_s_runs": runs, "images_per_s": len(files) / best,
            "images_per_s_median": len(files) / statistics.median(runs)}


def cli_peak_rss(model: Path, folder: Path, device: torch.device, out_csv: Path, env: dict) -> dict:
    """Run `ssd score MODEL FOLDER -o out.csv` in a subprocess; its own ru_maxrss via wait4, and the
    RUSAGE_CHILDREN high-water mark (max over all children so far) as the brief asks."""
    cmd = [sys.executable, "-m", "ssd_cli", "score", str(model), str(folder), "--top", "3", "--device", str(device), "-o", str(out_csv), "--force"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"ssd score failed ({proc.returncode}): {out.decode(errors='replace')[-2000:]}")
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mb": usage.ru_maxrss / 1024, "rusage_children_maxrss_mb": children / 1024, "wall_s": wall}


def bench_scoring(root: Path, device: torch.device, args, tmp: Path) -> dict:
    log(f"\n== Scoring (Detector.score, decode included), {args.score_n} files per folder; peak RSS of `ssd score` at 1x and {args.mem_factor}x")
    mnist = load_builtin("mnist", root, train=True).images[: args.score_n]
    cifar = cifar_class0(root, min(args.score_n, 5000))
    if len(cifar) < args.score_n:  # more than one class' worth requested: repeat the images
        cifar = cifar.repeat((args.score_n + len(cifar) - 1) // len(cifar), 1, 1, 1)[: args.score_n]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out: dict = {}
    for kind, arch, imgs, writer, suffix in (
        ("png_28", "mnist", mnist, write_pngs, "png"),
        ("jpeg_32", "cifar10", cifar, write_jpegs, "jpg"),
    ):
        folder, model = tmp / kind, tmp / f"{kind}.ssdmodel"
        start = time.perf_counter()
        writer(imgs, folder)
        replicate(folder, tmp / f"{kind}_x{args.mem_factor}", args.mem_factor)
        untrained_model(arch, imgs, model)
        prep = time.perf_counter() - start
        r = time_scoring(model, folder, device, args.score_repeats, args.workers)
        r["prep_s"] = prep
        log(f"  {kind}: {r['n_files']} files, best {r['images_per_s']:.0f} img/s (median {r['images_per_s_median']:.0f}; runs {[round(s, 2) for s in r['score_s_runs']]} s; listing {r['list_s']:.2f} s)")
        if not args.skip_memory:
            small = cli_peak_rss(model, folder, device, tmp / f"{kind}_1x.csv", env)
            large = cli_peak_rss(model, tmp / f"{kind}_x{args.mem_factor}", device, tmp / f"{kind}_{args.mem_factor}x.csv", env)
            r["memory"] = {"small_files": r["n_files"], "large_files": r["n_files"] * args.mem_factor, "small": small, "large": large,
                           "ratio": large["peak_rss_mb"] / small["peak_rss_mb"]}
            log(
                f"  {kind}: `ssd score` peak RSS {small['peak_rss_mb']:.0f} MB for {r['n_files']} files ({small['wall_s']:.1f} s), "
                f"{large['peak_rss_mb']:.0f} MB for {r['n_files'] * args.mem_factor} files ({large['wall_s']:.1f} s, "
                f"{r['n_files'] * args.mem_factor / large['wall_s']:.0f} img/s end to end) -> x{r['memory']['ratio']:.2f}; "
                f"RUSAGE_CHILDREN high-water {small['rusage_children_maxrss_mb']:.0f} -> {large['rusage_children_maxrss_mb']:.0f} MB"
            )
        out[kind] = r
    # What `ssd score` imports before it touches an image (its start-up cost, per invocation).
    code = "import time; t = time.perf_counter(); import ssd_cli.cli, ssd_cli.core.scoring, ssd_cli.io.modelfile; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    out["cli_import_s"] = min(runs)
    runs = [float(subprocess.run([sys.executable, "-c", code.replace("ssd_cli.cli, ", "")], env=env, cwd=REPO, capture_output=True, text=True, check=True).stdout) for _ in range(2)]
    out["engine_import_s"] = min(runs)
    log(f"  `ssd score` start-up: importing ssd_cli.cli + scoring + modelfile takes {out['cli_import_s']:.2f} s "
        f"(scoring + modelfile alone {out['engine_import_s']:.2f} s)")
    return out


# --------------------------------------------------------------------------------------------- photo scoring

PHOTO_SHAPES = {"224": (224, 224), "1024": (1024, 768)}  # (width, height) of the JPEGs
PHOTO_NETS = ("cifar10", "lenet-128")  # 32 px and 128 px inputs
PHOTO_QUALITY = 90  # as cameras and phones save


def photo_sources(root: Path) -> tuple[str, list[np.ndarray]]:
    """Real colour photos (HWC uint8): scikit-image's bundled ones (a dev tool, not a dependency of
    ssd), else CIFAR-10 photos tiled into mosaics."""
    try:
        from skimage import data as skdata
    except ImportError:
        tiles = cifar_class0(root, 2 * 768).permute(0, 2, 3, 1).numpy()

        def mosaic(t: np.ndarray) -> np.ndarray:  # 24 rows of 32 photos: 1024x768
            return np.concatenate([np.concatenate(list(t[r * 32 : (r + 1) * 32]), axis=1) for r in range(24)], axis=0)

        return "CIFAR-10 mosaics (scikit-image not installed)", [mosaic(tiles[:768]), mosaic(tiles[768:])]
    names = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field", "cat")
    return "scikit-image photos", [np.asarray(getattr(skdata, n)())[..., :3] for n in names]


def random_crop(sources: list[np.ndarray], w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A native-resolution w x h crop of a random source that is large enough, flipped at random."""
    fitting = [s for s in sources if s.shape[0] >= h and s.shape[1] >= w]
    src = fitting[rng.integers(len(fitting))]
    y, x = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
    crop = src[y : y + h, x : x + w]
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def write_photos(sources: list[np.ndarray], folder: Path, n: int, shape: tuple[int, int], seed: int) -> None:
    """n JPEGs of shape (w, h) without upscaling: one crop if a source is large enough, else a 2x2
    grid of half-size crops of different photos (real detail everywhere, four seams)."""
    from PIL import Image

    w, h = shape
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    whole = any(s.shape[0] >= h and s.shape[1] >= w for s in sources)
    for i in range(n):
        if whole and rng.random() < 0.5:
            arr = random_crop(sources, w, h, rng)
        else:
            quads = [random_crop(sources, w // 2, h // 2, rng) for _ in range(4)]
            arr = np.concatenate([np.concatenate(quads[:2], axis=1), np.concatenate(quads[2:], axis=1)], axis=0)
        Image.fromarray(np.ascontiguousarray(arr)).save(folder / f"{i:05d}.jpg", quality=PHOTO_QUALITY)


def time_decoding(files: list[Path], size: int, repeats: int, workers: int | None) -> float:
    """Best images/s of decoding alone (ssd's thread pool, batches of 512) to size x size colour."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        n = sum(len(b.paths) for b in iter_image_batches(files, size, 3, 512, workers))
        runs.append(time.perf_counter() - start)
    assert n == len(files), f"decoded {n} of {len(files)} files"
    return len(files) / min(runs)


def bench_photos(root: Path, device: torch.device, args, tmp: Path) -> dict:
    log(f"\n== Photo scoring (Detector.score, decode included), {args.photo_n} JPEGs per size, quality {PHOTO_QUALITY}, "
        f"untrained {' and '.join(PHOTO_NETS)}; load average {tuple(round(v, 2) for v in os.getloadavg())}")
    source, sources = photo_sources(root)
    out: dict = {"source": source, "n_files": args.photo_n}
    for label, shape in PHOTO_SHAPES.items():
        folder = tmp / f"photos_{label}"
        start = time.perf_counter()
        write_photos(sources, folder, args.photo_n, shape, args.seed)
        files = list_images([folder]).files
        mb = sum(f.stat().st_size for f in files) / 1e6
        log(f"  {len(files)} {shape[0]}x{shape[1]} JPEGs from {source}: {mb / len(files) * 1000:.0f} kB each, written in {time.perf_counter() - start:.1f} s")
        for arch in PHOTO_NETS:
            spec = get_spec(arch)
            model = tmp / f"photos_{label}_{arch}.safetensors"
            untrained_model(arch, load_images(files[:64], spec.image_size, spec.channels).images, model)
            r = time_scoring(model, folder, device, args.score_repeats, args.workers)
            r["decode_only_images_per_s"] = time_decoding(files, spec.image_size, args.score_repeats, args.workers)
            r["loadavg"] = os.getloadavg()
            out[f"{label}_{arch}"] = r
            log(f"  {shape[0]}x{shape[1]} -> {arch} ({spec.image_size} px): best {r['images_per_s']:.0f} img/s "
                f"(median {r['images_per_s_median']:.0f}; runs {[round(t, 2) for t in r['score_s_runs']]} s); "
                f"decoding alone {r['decode_only_images_per_s']:.0f} img/s; load average {tuple(round(v, 2) for v in r['loadavg'])}")
    return out


# --------------------------------------------------------------------------------------------- ONNX

ONNX_PATCH = PatchSpec(128, 32, 16)  # the 128 px patch-level model: a 7 x 7 grid of 32 px patches


def write_mosaics(images: torch.Tensor, folder: Path, n: int) -> None:
    """n 128x128 JPEGs of 4 x 4 real 32 px photos each (quality 90, as cameras save)."""
    from PIL import Image

    folder.mkdir(parents=True)
    tiles = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        t = tiles[(16 * i + np.arange(16)) % len(tiles)]
        arr = np.concatenate([np.concatenate(list(t[4 * r : 4 * r + 4]), axis=1) for r in range(4)], axis=0)
        Image.fromarray(arr).save(folder / f"{i:05d}.jpg", quality=90)


def best_rate(n: int, repeats: int, run) -> float:
    """Images per second of the fastest of `repeats` calls of run() (after one warm-up call)."""
    run()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        runs.append(time.perf_counter() - start)
    return n / min(runs)


def time_onnx(onnx_path: Path, model: Path, files: list[Path], device: torch.device, provider: str, args) -> dict:
    """torch and onnxruntime on the same files: end to end through ssd's decoding thread pool
    (batches of 512), and the network alone on the decoded images."""
    import onnxruntime

    saved = modelfile.load_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as torch has
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=[provider])
    scorer = Scorer(saved, device)
    size, channels = saved.input_size, saved.spec.channels
    images = load_images(files, size, channels, workers=args.workers, resize=saved.resize).images
    batches = [b.numpy() for b in images.split(512)]

    def ort_files() -> None:
        for batch in iter_image_batches(files, size, channels, 512, args.workers, resize=saved.resize):
            session.run(["score"], {"images": batch.images.numpy()})

    detector = Detector.load(model, device=str(device))

    def torch_files() -> None:
        detector.score(files, workers=args.workers)

    return {
        "n_files": len(files),
        "provider": provider,
        "threads": torch.get_num_threads(),
        "torch_images_per_s": best_rate(len(files), args.score_repeats, torch_files),
        "onnx_images_per_s": best_rate(len(files), args.score_repeats, ort_files),
        "torch_network_images_per_s": best_rate(len(files), args.score_repeats, lambda: scorer.score(images)),
        "onnx_network_images_per_s": best_rate(len(files), args.score_repeats, lambda: [session.run(["score"], {"images": b}) for b in batches]),
    }


def bench_onnx(root: Path, device: torch.device, args, tmp: Path) -> dict:
    if importlib.util.find_spec("onnxruntime") is None:
        log("\n== ONNX: skipped, onnxruntime is not installed (pip install -e '.[export]')")
        return {"skipped": "onnxruntime not installed"}
    import onnxruntime

    providers = ["CPUExecutionProvider"] + (["CUDAExecutionProvider"] if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers() else [])
    log(f"\n== ONNX: onnxruntime {onnxruntime.__version__} ({', '.join(providers)}) beside torch on {device}, {torch.get_num_threads()} threads each; "
        f"end to end (ssd's decoding) and the network alone; load average {tuple(round(v, 2) for v in os.getloadavg())}")
    mnist = load_builtin("mnist", root, train=True).images[: args.score_n]
    cifar = cifar_class0(root, min(args.score_n, 5000))
    out: dict = {}
    for kind, arch, writer, patch, n in (
        ("png_28", "mnist", lambda folder: write_pngs(mnist, folder), None, len(mnist)),
        ("jpeg_32", "cifar10", lambda folder: write_jpegs(cifar, folder), None, len(cifar)),
        ("patch_128", "cifar10", lambda folder: write_mosaics(cifar, folder, args.photo_n), ONNX_PATCH, args.photo_n),
    ):
        folder, model = tmp / f"onnx_{kind}", tmp / f"onnx_{kind}.safetensors"
        writer(folder)
        files = list_images([folder]).files
        untrained_model(arch, load_images(files[:64], patch.image_size if patch else get_spec(arch).image_size, 3 if arch == "cifar10" else 1).images, model, patch)
        Detector.load(model).export(model.with_suffix(".onnx"), force=True)
        for provider in providers:
            r = time_onnx(model.with_suffix(".onnx"), model, files, device, provider, args)
            r["ratio"] = r["onnx_images_per_s"] / r["torch_images_per_s"]
            r["network_ratio"] = r["onnx_network_images_per_s"] / r["torch_network_images_per_s"]
            out[f"{kind}_{provider}"] = r
            log(f"  {kind} ({arch}{', patches' if patch else ''}), {r['n_files']} files, {provider}: torch {r['torch_images_per_s']:.0f} img/s, "
                f"onnxruntime {r['onnx_images_per_s']:.0f} img/s (x{r['ratio']:.2f}); network alone torch {r['torch_network_images_per_s']:.0f}, "
                f"onnxruntime {r['onnx_network_images_per_s']:.0f} img/s (x{r['network_ratio']:.2f})")
    return out


# --------------------------------------------------------------------------------------------- One-Class variants


def bench_variants(name: str, ctx: dict, device: torch.device, args, epochs: int) -> dict:
    """Optional (--variants): the engine's One-Class training under other settings, each from the same
    pretrained weights and c as the main run, with its test AUC so a speed-up that costs accuracy shows."""
    from sklearn.metrics import roc_auc_score

    spec, x, y = ctx["spec"], ctx["x"], ctx["y"]
    if "x_test" not in ctx:  # CIFAR-10: the test split is 10,000 files, loaded only for the variants
        test = load_builtin("cifar10", ctx["root"], train=False)
        ctx["x_test"], _ = pipeline.training_tensors(ctx["pre"], device, test.images)
        ctx["is_anomaly"] = (test.labels != 0).numpy()
    log(f"\n== {name} One-Class engine variants ({args.warmup} warm-up + {epochs} timed epochs from the same pretrained weights)")
    total = args.warmup + epochs
    cfg = TrainConfig(objective=Objective.ONE_CLASS, optim=optim(total, args.batch_size))
    base_threads = torch.get_num_threads()
    results: dict = {}

    def run(label: str, build=lambda enc: enc, threads: int | None = None, autocast: bool = False) -> None:
        torch.set_num_threads(threads or base_threads)
        try:
            enc = pipeline.initial_encoder(spec, ctx["ae"], args.seed, device)
            start = time.perf_counter()
            model = build(enc)
            ctxm = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with ctxm:
                t = engine_epochs(lambda hook: training.train_deep_svdd(model, x, y, cfg, seed=args.seed, c=ctx["c"], on_epoch=hook))
            r = summarise(t, args.warmup, len(x))
            r["wall_incl_compile_s"] = time.perf_counter() - start
            r["auc"] = float(roc_auc_score(ctx["is_anomaly"], training.distances(enc, ctx["c"], ctx["x_test"]).float().cpu().numpy()))
        finally:
            torch.set_num_threads(base_threads)
        results[label] = r
        base = next(iter(results.values()))
        log(f"  {label:<28} {r['s_per_epoch']:6.2f} s/epoch  x{base['s_per_epoch'] / r['s_per_epoch']:.2f}  AUC {r['auc']:.4f}  "
            f"(epochs {[round(v, 2) for v in t]}; wall {r['wall_incl_compile_s']:.1f} s)")

    run(f"engine as is ({base_threads} threads)")
    if device.type == "cpu" and base_threads > 1:
        run("1 thread", threads=1)
    run("bf16 autocast", autocast=True)
    if args.compile:
        run("torch.compile(encoder)", build=lambda enc: torch.compile(enc))
    return results


# --------------------------------------------------------------------------------------------- report


def fmt_row(cells, widths) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def summary(res: dict) -> str:
    lines = []
    w = (36, 10, 9, 10, 9, 7, 10)
    lines.append(fmt_row(("training, batch 200", "(a) img/s", "(a) s/ep", "(b) img/s", "(b) s/ep", "b/a", "(b) best"), w))
    for ds, title in (("mnist", "MNIST"), ("cifar10", "CIFAR-10")):
        if ds not in res:
            continue
        r = res[ds]
        for key, what in (("ae", "AE pretraining"), ("oc", "One-Class Deep SVDD")):
            a, b = r[f"{key}_research"], r[f"{key}_engine"]
            lines.append(fmt_row((f"{title} {what} ({r['n_images']})", f"{a['images_per_s']:.0f}", f"{a['s_per_epoch']:.2f}",
                                  f"{b['images_per_s']:.0f}", f"{b['s_per_epoch']:.2f}", f"{r[key + '_ratio']:.2f}x",
                                  f"{b['images_per_s_best'] / a['images_per_s_best']:.2f}x"), w))
        lines.append(f"  {title} research input pipeline alone: {r['research_loader_only_s']:.2f} s/epoch; removing only it would give "
                     f"<= {r['ae_pipeline_only_bound']:.2f}x (AE), <= {r['oc_pipeline_only_bound']:.2f}x (One-Class)")
    lines.append("(a) re-created research pipeline (PIL + per-sample transforms + DataLoader + per-batch loop), (b) ssd engine;")
    lines.append("s/ep = median of the timed epochs, b/a from those; '(b) best' = ratio of the fastest epochs")
    if "mnist" in res:
        a = res["mnist"]["auc"]
        lines.append(f"AUC parity (MNIST test, class 0 normal, {a['epochs']} epochs each from the same pretrained weights): "
                     f"research {a['research']:.4f}  engine {a['engine']:.4f}  (not bit-identical: the shuffles differ)")
    for key, title in (("mnist_variants", "MNIST"), ("cifar10_variants", "CIFAR-10")):
        if key in res:
            v = {k: r for k, r in res[key].items() if isinstance(r, dict)}
            base = next(iter(v.values()))
            lines.append(f"{title} One-Class engine variants: " + "; ".join(
                f"{k} {r['s_per_epoch']:.2f} s/ep (x{base['s_per_epoch'] / r['s_per_epoch']:.2f}, AUC {r['auc']:.4f})" for k, r in v.items()))
    if "scoring" in res:
        sc = res["scoring"]
        lines.append("")
        w2 = (36, 10, 8, 12, 12, 7)
        lines.append(fmt_row(("scoring (decode + network)", "img/s", "target", "peak RSS 1x", f"peak RSS {res.get('mem_factor', 10)}x", "ratio"), w2))
        for kind, title, target in (("png_28", "28x28 PNG (mnist net)", TARGETS["score_png_ips"]), ("jpeg_32", "32x32 JPEG (cifar10 net)", TARGETS["score_jpeg_ips"])):
            r = sc.get(kind)
            if not r:
                continue
            m = r.get("memory")
            mem = (f"{m['small']['peak_rss_mb']:.0f} MB", f"{m['large']['peak_rss_mb']:.0f} MB", f"{m['ratio']:.2f}x") if m else ("-", "-", "-")
            lines.append(fmt_row((f"{title}, {r['n_files']} files", f"{r['images_per_s']:.0f}", f"{target:.0f}", *mem), w2))
        if "cli_import_s" in sc:
            lines.append(f"`ssd score` start-up (imports) {sc['cli_import_s']:.2f} s per invocation")
    if "photos" in res:
        ph = res["photos"]
        lines.append("")
        w3 = (36, 10, 14, 16)
        lines.append(fmt_row((f"photo scoring ({ph['n_files']} JPEGs each)", "img/s", "decode img/s", "load avg (1 min)"), w3))
        for label, (pw, phh) in PHOTO_SHAPES.items():
            for arch in PHOTO_NETS:
                r = ph.get(f"{label}_{arch}")
                if r:
                    lines.append(fmt_row((f"{pw}x{phh} JPEG -> {arch}", f"{r['images_per_s']:.0f}", f"{r['decode_only_images_per_s']:.0f}",
                                          f"{r['loadavg'][0]:.2f}"), w3))
        lines.append(f"  photos: {ph['source']}")
    if "onnx" in res and "skipped" not in res["onnx"]:
        lines.append("")
        w4 = (44, 10, 10, 7, 12, 12, 7)
        lines.append(fmt_row(("onnxruntime vs torch scoring", "torch", "onnx", "ratio", "torch net", "onnx net", "ratio"), w4))
        for key, r in res["onnx"].items():
            if isinstance(r, dict):
                lines.append(fmt_row((f"{key}, {r['n_files']} files", f"{r['torch_images_per_s']:.0f}", f"{r['onnx_images_per_s']:.0f}", f"{r['ratio']:.2f}x",
                                      f"{r['torch_network_images_per_s']:.0f}", f"{r['onnx_network_images_per_s']:.0f}", f"{r['network_ratio']:.2f}x"), w4))
        lines.append("  img/s, best of --score-repeats; 'net': the network alone on decoded images; ratio = onnxruntime / torch")
    lines.append("")
    lines.append("targets:")
    for name, ok, value in targets(res):
        lines.append(f"  {'MET   ' if ok else 'MISSED'} {name}: {value}")
    shares = {k: v.get("foreign_cpu_share") for k, v in res.items() if isinstance(v, dict) and "foreign_cpu_share" in v}
    if shares:
        lines.append("other processes' share of the CPU per section: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items() if v is not None))
    return "\n".join(lines)


def targets(res: dict) -> list[tuple[str, bool, str]]:
    out = []
    if "mnist" in res:
        r = res["mnist"]["oc_ratio"]
        out.append(("MNIST One-Class engine >= 3x research", r >= TARGETS["mnist_one_class_ratio"], f"{r:.2f}x"))
    if "cifar10" in res:
        r = res["cifar10"]["oc_ratio"]
        out.append(("CIFAR-10 One-Class engine >= 2x research", r >= TARGETS["cifar_one_class_ratio"], f"{r:.2f}x"))
    s = res.get("scoring", {})
    if "png_28" in s:
        v = s["png_28"]["images_per_s"]
        out.append(("scoring 28x28 PNG >= 5,000 img/s", v >= TARGETS["score_png_ips"], f"{v:.0f} img/s"))
    if "jpeg_32" in s:
        v = s["jpeg_32"]["images_per_s"]
        out.append(("scoring 32x32 JPEG >= 2,500 img/s", v >= TARGETS["score_jpeg_ips"], f"{v:.0f} img/s"))
    for kind in ("png_28", "jpeg_32"):
        m = s.get(kind, {}).get("memory")
        if m:
            ok = m["ratio"] <= 1.15
            k = m["large_files"] // max(m["small_files"], 1)
            out.append((f"{kind} peak RSS flat ({k}x files <= 1.15x memory)", ok, f"{m['ratio']:.2f}x"))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("SSD_DATA_ROOT", REPO.parent / "shared" / "datasets")),
                   help="folder with MNIST/raw and cifar10-jpeg/ (or cifar-10-batches-py/)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per MNIST run (after the warm-up)")
    p.add_argument("--cifar-epochs", type=int, default=2, help="timed epochs per CIFAR-10 run (after the warm-up)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up epochs per run, excluded from timing")
    p.add_argument("--batch-size", type=int, default=200)
    p.add_argument("--cifar-n", type=int, default=5000, help="CIFAR-10 class-0 training images")
    p.add_argument("--score-n", type=int, default=5000, help="files per scoring folder")
    p.add_argument("--score-repeats", type=int, default=2, help="timed scoring passes (best is reported)")
    p.add_argument("--mem-factor", type=int, default=10, help="the large scoring folder has this many times more files")
    p.add_argument("--workers", type=int, default=None, help="decoding threads for scoring (default: ssd's default)")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--photo-n", type=int, default=1000, help="JPEGs per photo size (224x224 and 1024x768) for the photo scoring")
    p.add_argument("--only", nargs="+", choices=("mnist", "cifar10", "scoring", "photos", "onnx"), default=("mnist", "cifar10", "scoring", "photos", "onnx"))
    p.add_argument("--skip-memory", action="store_true", help="no `ssd score` subprocesses (peak RSS)")
    p.add_argument("--variants", action="store_true", help="also time One-Class training under other settings: 1 thread, bf16 autocast (and torch.compile with --compile)")
    p.add_argument("--compile", action="store_true", help="with --variants: include torch.compile (slow to compile on CPU)")
    p.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore", category=UserWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available on this machine")
    root = args.data_root.expanduser().resolve()
    torch.manual_seed(args.seed)
    wall = time.perf_counter()
    res: dict = {"machine": machine_info(device), "command": " ".join([Path(sys.executable).name, *sys.argv]), "mem_factor": args.mem_factor}
    m = res["machine"]
    log(f"ssd speed benchmark  {m['date']}")
    log(f"machine: {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable); torch {m['torch']}, {m['torch_threads']} threads, "
        f"{m['cpu_capability']}; device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; load average {tuple(round(v, 2) for v in m['loadavg_start'])}")
    with tempfile.TemporaryDirectory(prefix="ssd-speed-") as tmpdir:
        # Scoring first: its `ssd score` subprocesses must be the only children for RUSAGE_CHILDREN.
        if "scoring" in args.only:
            section(res, "scoring", bench_scoring, root, device, args, Path(tmpdir))
        if "photos" in args.only:
            section(res, "photos", bench_photos, root, device, args, Path(tmpdir))
        if "onnx" in args.only:
            section(res, "onnx", bench_onnx, root, device, args, Path(tmpdir))
        if "mnist" in args.only:
            section(res, "mnist", bench_mnist, root, device, args)
            ctx = res["mnist"].pop("_ctx")
            if args.variants:
                section(res, "mnist_variants", bench_variants, "MNIST", ctx, device, args, args.epochs)
        if "cifar10" in args.only:
            section(res, "cifar10", bench_cifar, root, device, args)
            ctx = res["cifar10"].pop("_ctx")
            if args.variants:
                section(res, "cifar10_variants", bench_variants, "CIFAR-10", ctx, device, args, args.cifar_epochs)
    res["machine"]["loadavg_end"] = os.getloadavg()
    res["total_seconds"] = time.perf_counter() - wall
    res["targets"] = [{"target": n, "met": ok, "value": v} for n, ok, v in targets(res)]
    log("\n== Summary\n" + summary(res))
    log(f"\ntotal {res['total_seconds']:.0f} s; load average at end {tuple(round(v, 2) for v in res['machine']['loadavg_end'])} "
        "(other processes on the machine slow every figure down)")
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
