"""The LeNet-type networks of the paper's Appendix B, a registry of them by name, and their decoders.

Every layer of phi is bias-free and every activation unbounded (leaky ReLU), which the paper requires
to rule out the trivial "hypersphere collapse" solution. Batch norm has no affine parameters for the
same reason (its shift would act as a bias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.1  # alpha in Appendix B
BN_EPS = 1e-4  # as in the original Deep SVDD code


@dataclass(frozen=True)
class LeNetSpec:
    """Conv modules (5x5 conv, BN, leaky ReLU, 2x2 max-pool) followed by dense layers."""

    name: str
    channels: int
    image_size: int
    conv_filters: tuple[int, ...]
    dense_units: tuple[int, ...]  # the last one is the output dimension of phi
    kernel_size: int = 5

    @property
    def rep_dim(self) -> int:
        return self.dense_units[-1]

    @property
    def feature_size(self) -> int:
        """Side length of the feature map after all pooling steps."""
        return self.image_size // 2 ** len(self.conv_filters)


_REGISTRY: dict[str, Callable[[], LeNetSpec]] = {}


def register(fn: Callable[[], LeNetSpec]) -> Callable[[], LeNetSpec]:
    _REGISTRY[fn().name] = fn
    return fn


@register
def mnist() -> LeNetSpec:
    return LeNetSpec("mnist", channels=1, image_size=28, conv_filters=(8, 4), dense_units=(32,))


@register
def fashion_mnist() -> LeNetSpec:
    return LeNetSpec("fashion-mnist", channels=1, image_size=28, conv_filters=(16, 32), dense_units=(64, 32))


@register
def cifar10() -> LeNetSpec:
    return LeNetSpec("cifar10", channels=3, image_size=32, conv_filters=(32, 64, 128), dense_units=(128,))


def _native(side: int, conv_filters: tuple[int, ...], rep_dim: int) -> LeNetSpec:
    """A network for native-resolution photos, by the paper's own rules: one more conv module per
    doubling of the side beyond CIFAR-10's 32 px, so that every network ends on a 4x4 feature map."""
    return LeNetSpec(f"lenet-{side}", channels=3, image_size=side, conv_filters=conv_filters, dense_units=(rep_dim,))


@register
def lenet_64() -> LeNetSpec:
    return _native(64, (16, 32, 64, 128), 128)


@register
def lenet_128() -> LeNetSpec:
    return _native(128, (8, 16, 32, 64, 128), 128)


@register
def lenet_256() -> LeNetSpec:
    return _native(256, (8, 16, 32, 64, 64, 128), 128)


# The input sides `ssd` chooses between for folders of images, and the network for each (docs/usage.md).
SIZE_STEPS = (28, 32, 64, 128, 256)
_NETWORK_FOR_SIZE = {28: "mnist", 32: "cifar10", 64: "lenet-64", 128: "lenet-128", 256: "lenet-256"}


def network_for_size(image_size: int) -> str:
    """The registered network made for the smallest step >= image_size (the largest one beyond)."""
    for step in SIZE_STEPS:
        if image_size <= step:
            return _NETWORK_FOR_SIZE[step]
    return _NETWORK_FOR_SIZE[SIZE_STEPS[-1]]


def architectures() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(name: str, channels: int | None = None, image_size: int | None = None) -> LeNetSpec:
    """The registered network, optionally for another input size or channel count."""
    try:
        spec = _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown architecture '{name}'; choose one of: {', '.join(architectures())}") from None
    spec = replace(
        spec,
        channels=spec.channels if channels is None else channels,
        image_size=spec.image_size if image_size is None else image_size,
    )
    step = 2 ** len(spec.conv_filters)
    if spec.channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (colour), got {spec.channels}")
    if spec.image_size < step or spec.image_size % step:
        raise ValueError(f"image size for '{name}' must be a positive multiple of {step}, got {spec.image_size}")
    return spec


class BatchNorm2d(nn.BatchNorm2d):
    """Batch norm that runs layers of few channels in NCHW on the CPU.

    PyTorch's channels_last batch-norm kernels are slow for a handful of channels (the MNIST net has
    8 and 4): measured 1.15x faster MNIST training with this (benchmarks/speed.py). Same parameters
    and state dict as nn.BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.num_features < 16 and x.device.type == "cpu" and not x.is_contiguous():
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


def _bn(n: int, dims: int) -> nn.Module:
    return (BatchNorm2d if dims == 2 else nn.BatchNorm1d)(n, eps=BN_EPS, affine=False)


class Encoder(nn.Module):
    """phi: image -> R^rep_dim, bias-free."""

    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.spec = spec
        pad = spec.kernel_size // 2
        convs, bns, in_ch = [], [], spec.channels
        for out_ch in spec.conv_filters:
            convs.append(nn.Conv2d(in_ch, out_ch, spec.kernel_size, padding=pad, bias=False))
            bns.append(_bn(out_ch, 2))
            in_ch = out_ch
        self.convs, self.conv_bns = nn.ModuleList(convs), nn.ModuleList(bns)
        units = (in_ch * spec.feature_size**2, *spec.dense_units)
        self.dense = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(units[:-1], units[1:]))
        self.dense_bns = nn.ModuleList(_bn(u, 1) for u in spec.dense_units[:-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in zip(self.convs, self.conv_bns):
            x = F.max_pool2d(F.leaky_relu(bn(conv(x)), LEAKY_SLOPE), 2)
        x = x.flatten(1)
        for i, layer in enumerate(self.dense):
            x = layer(x)
            if i < len(self.dense_bns):  # hidden dense layers; the output layer stays linear
                x = F.leaky_relu(self.dense_bns[i](x), LEAKY_SLOPE)
        return x


class Decoder(nn.Module):
    """The encoder mirrored, with nearest-neighbour upsampling where the encoder pools."""

    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.spec = spec
        pad = spec.kernel_size // 2
        top = spec.conv_filters[-1]
        units = (*reversed(spec.dense_units), top * spec.feature_size**2)
        self.dense = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(units[:-1], units[1:]))
        self.dense_bns = nn.ModuleList(_bn(u, 1) for u in units[1:])
        chans = (*reversed(spec.conv_filters), spec.channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, spec.kernel_size, padding=pad, bias=False) for a, b in zip(chans[:-1], chans[1:])
        )
        self.conv_bns = nn.ModuleList(_bn(c, 2) for c in chans[1:-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for layer, bn in zip(self.dense, self.dense_bns):
            z = F.leaky_relu(bn(layer(z)), LEAKY_SLOPE)
        s = self.spec
        x = z.view(z.shape[0], s.conv_filters[-1], s.feature_size, s.feature_size)
        for i, conv in enumerate(self.convs):
            x = conv(F.interpolate(x, scale_factor=2, mode="nearest"))
            if i < len(self.conv_bns):
                x = F.leaky_relu(self.conv_bns[i](x), LEAKY_SLOPE)
        # A sigmoid on the reconstruction only (inputs lie in [0, 1]); phi itself stays unbounded.
        return torch.sigmoid(x)


class AutoEncoder(nn.Module):
    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(spec), Decoder(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class Classifier(nn.Module):
    """The supervised baseline: the same phi plus one output unit (a logit for 'anomalous')."""

    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.encoder = Encoder(spec)
        self.head = nn.Linear(spec.rep_dim, 1)
        for m in self.modules():  # Appendix C: uniform Glorot initialisation
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)).squeeze(1)


