"""A re-creation (written for this benchmark, not copied) of the original Deep SVDD research code's
input pipeline and training loops, used as the baseline in benchmarks/speed.py.

What is re-created, as the original PyTorch code of Ruff et al. (2018) is described to work:

* data: a torchvision dataset subclass whose ``__getitem__`` turns the stored array of one image into a
  PIL image (``Image.fromarray``) and runs per-sample transforms on it: ``ToTensor()``, global contrast
  normalisation with the l1 scale, then ``Normalize`` with the per-class min-max statistics; it returns
  ``(image, target, index)`` with the target mapped to 0 (normal) / 1 (outlier). The training set is a ``Subset`` of the normal class, fed through
  ``DataLoader(batch_size=200, shuffle=True, num_workers=0)``.
* loops: per epoch, every batch is moved to the device, the loss is computed per batch (distance to
  ``c`` for One-Class Deep SVDD; per-sample sum of squared errors, then the batch mean, for the
  autoencoder), followed by ``zero_grad``/``backward``/``step``, and the epoch loss is accumulated
  with ``loss.item()`` after every batch. Adam with a ``MultiStepLR`` schedule.
* the center c: mean network output over the training loader, network in eval mode, coordinates with
  ``|c_k| < eps`` pushed to ``+-eps``.

The networks are this tool's (ssd_cli.core.nets) so that the comparison isolates the input pipeline and the
loop, not architecture details. The min-max statistics are the tool's fitted ``Preprocessor`` values,
so both pipelines feed numerically the same inputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets as tvd
from torchvision import transforms
from torchvision.datasets.vision import VisionDataset


def global_contrast_normalization_l1(x: torch.Tensor) -> torch.Tensor:
    """One image: subtract its mean, divide by its mean absolute deviation (the 'l1' scale)."""
    x = x - torch.mean(x)
    return x / torch.mean(torch.abs(x))


def research_transform(low: float, high: float, channels: int) -> transforms.Compose:
    """ToTensor -> GCN (l1) -> Normalize(min, max - min), all per sample."""
    return transforms.Compose(
        [
            transforms.ToTensor(),
            transforms.Lambda(global_contrast_normalization_l1),
            transforms.Normalize([low] * channels, [high - low] * channels),
        ]
    )


class ResearchMNIST(tvd.MNIST):
    """torchvision's MNIST, returning (image, target, index) like the research code's subclass."""

    @property
    def raw_folder(self) -> str:  # torchvision derives it from the class name; the files are in MNIST/raw
        return str(Path(self.root) / "MNIST" / "raw")

    def __getitem__(self, index: int):
        img, target = self.data[index], int(self.targets[index])
        img = Image.fromarray(img.numpy())  # uint8 (28, 28) -> mode "L"
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target, index


class ResearchCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10 (uint8 HWC numpy array in memory, Image.fromarray per item), built from
    arrays because this machine has CIFAR-10 only as JPEG folders, not the official python batches."""

    def __init__(self, data: np.ndarray, targets: Sequence[int], transform=None, target_transform=None) -> None:
        VisionDataset.__init__(self, root="", transform=transform, target_transform=target_transform)  # skip the file loading of CIFAR10
        self.train = True
        self.data = data  # (N, 32, 32, 3) uint8, as torchvision holds it
        self.targets = list(targets)

    def __getitem__(self, index: int):
        img, target = self.data[index], self.targets[index]
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return img, target, index


def outlier_target(normal_class: int = 0) -> transforms.Lambda:
    """The research code's target_transform: 1 for an outlier class, 0 for the normal class."""
    outlier_classes = [c for c in range(10) if c != normal_class]
    return transforms.Lambda(lambda t: int(t in outlier_classes))


def train_loader(dataset, indices: Sequence[int], batch_size: int = 200, seed: int = 0) -> DataLoader:
    """Subset of the normal class, shuffled each epoch, decoded in the main process (num_workers=0)."""
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, shuffle=True, num_workers=0, generator=gen)


def test_loader(dataset, batch_size: int = 200) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)


EpochHook = Callable[[int, float, float], None]  # (epoch, mean loss, seconds)


def _optimizer(net: nn.Module, lr: float, weight_decay: float, milestones: Sequence[int]):
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=0.1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_autoencoder(
    ae: nn.Module,
    loader: DataLoader,
    device: torch.device,
    epochs: int,
    *,
    lr: float = 1e-4,
    weight_decay: float = 1e-6,
    milestones: Sequence[int] = (),
    on_epoch: EpochHook | None = None,
) -> list[float]:
    """The research autoencoder trainer: per-sample sum of squares, batch mean, .item() per batch."""
    ae = ae.to(device)
    opt, sched = _optimizer(ae, lr, weight_decay, milestones)
    ae.train()
    losses = []
    for epoch in range(epochs):
        loss_epoch, n_batches = 0.0, 0
        start = time.perf_counter()
        for data in loader:
            inputs, _, _ = data
            inputs = inputs.to(device)
            opt.zero_grad()
            outputs = ae(inputs)
            scores = torch.sum((outputs - inputs) ** 2, dim=tuple(range(1, outputs.dim())))
            loss = torch.mean(scores)
            loss.backward()
            opt.step()
            loss_epoch += loss.item()
            n_batches += 1
        sched.step()
        _sync(device)
        losses.append(loss_epoch / max(n_batches, 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1], time.perf_counter() - start)
    return losses


@torch.no_grad()
def init_center_c(net: nn.Module, loader: DataLoader, device: torch.device, rep_dim: int, eps: float = 0.1) -> torch.Tensor:
    """c = mean output over the training data (eval mode); near-zero coordinates pushed to +-eps."""
    n_samples = 0
    c = torch.zeros(rep_dim, device=device)
    net.eval()
    for inputs, _, _ in loader:
        inputs = inputs.to(device)
        outputs = net(inputs)
        n_samples += outputs.shape[0]
        c += torch.sum(outputs, dim=0)
    c /= n_samples
    c[(abs(c) < eps) & (c < 0)] = -eps
    c[(abs(c) < eps) & (c > 0)] = eps
    return c


def train_one_class(
    net: nn.Module,
    loader: DataLoader,
    c: torch.Tensor,
    device: torch.device,
    epochs: int,
    *,
    lr: float = 1e-4,
    weight_decay: float = 1e-6,
    milestones: Sequence[int] = (),
    on_epoch: EpochHook | None = None,
) -> list[float]:
    """The research One-Class Deep SVDD trainer: dist and loss per batch, .item() per batch."""
    net = net.to(device)
    opt, sched = _optimizer(net, lr, weight_decay, milestones)
    net.train()
    losses = []
    for epoch in range(epochs):
        loss_epoch, n_batches = 0.0, 0
        start = time.perf_counter()
        for data in loader:
            inputs, _, _ = data
            inputs = inputs.to(device)
            opt.zero_grad()
            outputs = net(inputs)
            dist = torch.sum((outputs - c) ** 2, dim=1)
            loss = torch.mean(dist)
            loss.backward()
            opt.step()
            loss_epoch += loss.item()
            n_batches += 1
        sched.step()
        _sync(device)
        losses.append(loss_epoch / max(n_batches, 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, losses[-1], time.perf_counter() - start)
    return losses


@torch.no_grad()
def test_scores(net: nn.Module, loader: DataLoader, c: torch.Tensor, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances to c and labels of a test loader, network in eval mode."""
    net.eval()
    scores, labels = [], []
    for inputs, targets, _ in loader:
        inputs = inputs.to(device)
        outputs = net(inputs)
        scores.append(torch.sum((outputs - c) ** 2, dim=1).cpu())
        labels.append(targets)
    return torch.cat(scores).numpy(), torch.cat(labels).numpy()


def time_loader(loader: DataLoader) -> float:
    """Seconds for one pass of the loader with no network: the input pipeline's own cost."""
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start
