"""Create the small real-image example set in this folder from MNIST (run once; the output is committed).

Usage: python sample_data/make_sample_data.py DATA_ROOT
where DATA_ROOT holds MNIST/raw/ in torchvision's layout (e.g. /work/shared/datasets). It writes:
  normal/     400 train-split zeros (unlabeled normal data)
  anomalies/  45 train-split digits, 5 each of 1-9 (labeled anomalies)
  incoming/   100 test-split images, 80 zeros and 20 of 1-9, shuffled and renamed img-000.png ...
  incoming_labels.csv  the truth for incoming/, kept outside it so scoring the folder does not see it
Every choice comes from numpy.random.default_rng(0), so rerunning reproduces identical files.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import MNIST

HERE = Path(__file__).resolve().parent
NORMAL_DIGIT = 0
N_NORMAL = 400
ANOMALIES_PER_DIGIT = 5
N_INCOMING_NORMAL = 80
N_INCOMING_ANOMALY = 20


def pick(rng: np.random.Generator, labels: np.ndarray, digit: int, n: int) -> np.ndarray:
    """n distinct dataset indices of one digit, sorted so file listings follow dataset order."""
    return np.sort(rng.choice(np.flatnonzero(labels == digit), size=n, replace=False))


def save(images: np.ndarray, index: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(images[index]).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_root", type=Path, help="folder holding MNIST/raw/ (torchvision layout)")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: this script's folder)")
    args = parser.parse_args()
    for sub in ("normal", "anomalies", "incoming"):
        if (args.out / sub).exists() and any((args.out / sub).iterdir()):
            parser.error(f"{args.out / sub} is not empty; remove it first")

    rng = np.random.default_rng(0)
    train = MNIST(args.data_root, train=True, download=False)
    test = MNIST(args.data_root, train=False, download=False)
    train_x, train_y = train.data.numpy(), train.targets.numpy()
    test_x, test_y = test.data.numpy(), test.targets.numpy()

    for i in pick(rng, train_y, NORMAL_DIGIT, N_NORMAL):
        save(train_x, i, args.out / "normal" / f"mnist-train-{i:05d}.png")
    for digit in range(1, 10):
        for i in pick(rng, train_y, digit, ANOMALIES_PER_DIGIT):
            save(train_x, i, args.out / "anomalies" / f"mnist-train-{i:05d}.png")

    # 20 anomalies over 9 digits: 2 of each, plus one more for two randomly chosen digits.
    per_digit = {d: 2 for d in range(1, 10)}
    for d in rng.choice(np.arange(1, 10), size=N_INCOMING_ANOMALY - 18, replace=False):
        per_digit[int(d)] += 1
    chosen = [(int(i), "normal") for i in pick(rng, test_y, NORMAL_DIGIT, N_INCOMING_NORMAL)]
    chosen += [(int(i), "anomaly") for d, n in per_digit.items() for i in pick(rng, test_y, d, n)]
    order = rng.permutation(len(chosen))
    with open(args.out / "incoming_labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        for k, j in enumerate(order):
            index, label = chosen[j]
            save(test_x, index, args.out / "incoming" / f"img-{k:03d}.png")
            writer.writerow([f"incoming/img-{k:03d}.png", label])


if __name__ == "__main__":
    main()
