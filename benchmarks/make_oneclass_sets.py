"""One-class CIFAR-10 / MNIST / Fashion-MNIST as ten photo folders, so `ssd train` and `ssd evaluate`
meet them as a user's folders (the default command, not the benchmark's paper preset).

    .venv/bin/python benchmarks/make_oneclass_sets.py --dataset cifar10 --out /work/runs/oneclass-cifar10 [--data-root ../shared/datasets]
    .venv/bin/python benchmarks/photo_quality.py --sets /work/runs/oneclass-cifar10 --no-defaults \\
        --configs 'default=' --out /work/runs/oneclass-cifar10.json [--no-anomalies]

For every class k it writes OUT/<k>-<class>/ with the layout photo_quality.py runs:

    train/normal     --train images of class k from the train split (default 600, drawn with --seed)
    train/bad        --labeled images of class (k+1) mod 10 from the train split (default 20): the
                     "20 labeled anomalies of one other class" setting
    test/normal      the whole test split of class k (1,000 for CIFAR-10, about 1,000 for the others)
    test/anomalous   the whole test split of the nine other classes

CIFAR-10 comes from the `cifar10-jpeg` copy (JPEG, not the official bytes) and its files are symbolic
links to those JPEGs (nothing is re-encoded). MNIST and Fashion-MNIST are read from their official idx
files and written once as PNG under OUT/images/ (lossless, 28x28 grayscale), which the class folders
link to. The same seed gives the same sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ssd_cli.data.datasets import load_builtin  # noqa: E402

DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
DATASETS = ("cifar10", "mnist", "fashion-mnist")


def cifar_files(data_root: Path) -> tuple[list[str], dict[str, dict[str, list[Path]]]]:
    """Class names and {split: {class: sorted JPEG paths}} of the cifar10-jpeg copy."""
    root = data_root / "cifar10-jpeg"
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    files = {split: {c: sorted((root / split / c).glob("*.jpg")) for c in classes} for split in ("train", "test")}
    if not classes or not all(files[s][c] for s in files for c in classes):
        raise SystemExit(f"{root}: expected train/<class>/*.jpg and test/<class>/*.jpg")
    return classes, files


def idx_files(name: str, data_root: Path, out: Path) -> tuple[list[str], dict[str, dict[str, list[Path]]]]:
    """The dataset's images written once as PNG under OUT/images/<split>/<class>/, and their paths."""
    files: dict[str, dict[str, list[Path]]] = {}
    classes: list[str] = []
    for split, train in (("train", True), ("test", False)):
        data = load_builtin(name, data_root, train=train)
        classes = [c.replace(" ", "_").replace("/", "-") for c in data.classes]
        files[split] = {c: [] for c in classes}
        for i, (img, label) in enumerate(zip(data.images, data.labels.tolist())):
            cls = classes[label]
            path = out / "images" / split / cls / f"{split}-{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img[0].numpy()).save(path)
            files[split][cls].append(path)
    return classes, files


def _link(files: list[Path], folder: Path) -> None:
    folder.mkdir(parents=True)
    for src in files:
        (folder / f"{src.parent.name}_{src.name}").symlink_to(src.resolve())


def _drawn(files: list[Path], n: int, rng: np.random.Generator) -> list[Path]:
    if len(files) < n:
        raise SystemExit(f"need {n} images, the class has {len(files)}")
    return [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]


def make_class_set(out: Path, classes: list[str], files: dict, k: int, n_train: int, n_labeled: int, rng: np.random.Generator) -> dict:
    """OUT/<k>-<class>/ for normal class k; returns its manifest entry."""
    normal, labeled = classes[k], classes[(k + 1) % len(classes)]
    root = out / f"{k}-{normal}"
    _link(_drawn(files["train"][normal], n_train, rng), root / "train" / "normal")
    _link(_drawn(files["train"][labeled], n_labeled, rng), root / "train" / "bad")
    _link(files["test"][normal], root / "test" / "normal")
    _link([f for c in classes if c != normal for f in files["test"][c]], root / "test" / "anomalous")
    return {"set": root.name, "normal_class": normal, "labeled_anomaly_class": labeled, "train": n_train, "labeled": n_labeled, "test_normal": len(files["test"][normal])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--dataset", choices=DATASETS, default="cifar10")
    ap.add_argument("--out", type=Path, required=True, help="folder to create (must not exist or be empty)")
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="holds cifar10-jpeg/, MNIST/raw/, FashionMNIST/raw/")
    ap.add_argument("--classes", default=",".join(str(k) for k in range(10)), help="normal classes, comma-separated indices (default all)")
    ap.add_argument("--train", type=int, default=600, help="training images of the normal class")
    ap.add_argument("--labeled", type=int, default=20, help="labeled anomalies, from the next class")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} exists and is not empty")
    args.out.mkdir(parents=True, exist_ok=True)
    classes, files = cifar_files(args.data_root) if args.dataset == "cifar10" else idx_files(args.dataset, args.data_root, args.out)
    manifest = []
    for k in (int(c) for c in args.classes.split(",")):
        rng = np.random.default_rng([args.seed, k])  # each class its own stream
        manifest.append(make_class_set(args.out, classes, files, k, args.train, args.labeled, rng))
    doc = {"dataset": args.dataset, "data_root": str(args.data_root.resolve()), "seed": args.seed, "sets": manifest}
    (args.out / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(manifest)} set(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
