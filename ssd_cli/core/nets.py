"""The LeNet-type networks of the paper's Appendix B, a registry of them by name, and their decoders.

A `LeNetSpec` is the whole network: model files store `spec.to_dict()`, so a file loads whatever the
registry holds today.

Every layer of phi is bias-free and every activation unbounded (leaky ReLU), which the paper requires
to rule out the trivial "hypersphere collapse" solution. Batch norm has no affine parameters for the
same reason (its shift would act as a bias).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from ssd_cli.core import distributed

LEAKY_SLOPE = 0.1  # alpha in Appendix B
BN_EPS = 1e-4  # as in the original Deep SVDD code

# Bounds on a network description. A model file states its network, so these are checked with
# arithmetic alone before a module is built: a crafted file cannot make a load allocate gigabytes.
MAX_IMAGE_SIZE = 1024
MAX_CONV_MODULES = 8
MAX_CONV_FILTERS = 1024
MAX_DENSE_LAYERS = 8
MAX_DENSE_UNITS = 65536
MAX_KERNEL_SIZE = 15
MAX_PARAMETERS = 100_000_000  # weights of phi (the autoencoder has about twice as many)
# Autoencoder decoders for pretraining, by name (builders: DECODER_BUILDERS below).
DECODERS = ("upsample", "transposed", "transposed-bn")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # names are shown in terminals: no markup, no spaces


def _show(value: object) -> str:
    """A value for an error message, short even when a file holds something huge."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_int(value: object, what: str, high: int) -> None:
    if type(value) is not int or not 1 <= value <= high:  # type(): True and 28.0 are not sizes
        raise ValueError(f"{what} must be an integer from 1 to {high}, got {_show(value)}")


def _check_ints(values: object, what: str, most: int, high: int) -> None:
    if not isinstance(values, tuple) or not 1 <= len(values) <= most:
        raise ValueError(f"{what} must be 1 to {most} integers, got {_show(values)}")
    for v in values:
        _check_int(v, f"each of {what}", high)


@dataclass(frozen=True)
class LeNetSpec:
    """Conv modules (5x5 conv, BN, leaky ReLU, 2x2 max-pool) followed by dense layers.

    Every spec is validated on construction (sizes, bounds, parameter count), so an invalid network
    cannot exist; `from_dict` reads one from a model file without a registry lookup.
    """

    name: str  # informational: the fields alone define the network
    channels: int
    image_size: int
    conv_filters: tuple[int, ...]
    dense_units: tuple[int, ...]  # the last one is the output dimension of phi
    kernel_size: int = 5
    decoder: str = "upsample"  # the autoencoder's decoder for pretraining (DECODERS); not part of phi

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"network name must be 1-64 letters, digits or ._+- characters, got {_show(self.name)}")
        if type(self.channels) is not int or self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (colour), got {_show(self.channels)}")
        _check_int(self.image_size, "image size", MAX_IMAGE_SIZE)
        _check_ints(self.conv_filters, "conv filters", MAX_CONV_MODULES, MAX_CONV_FILTERS)
        _check_ints(self.dense_units, "dense units", MAX_DENSE_LAYERS, MAX_DENSE_UNITS)
        _check_int(self.kernel_size, "kernel size", MAX_KERNEL_SIZE)
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel size must be odd (padding keeps the image size), got {self.kernel_size}")
        step = 2 ** len(self.conv_filters)
        if self.image_size % step:
            raise ValueError(f"image size for '{self.name}' must be a positive multiple of {step}, got {self.image_size}")
        if not isinstance(self.decoder, str) or self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {_show(self.decoder)}")
        if self.decoder != "upsample" and self.dense_units[0] % 16:
            raise ValueError(f"the '{self.decoder}' decoder reshapes {self.dense_units[0]} units to a 4x4 grid: they must be a multiple of 16")
        if self.parameter_count > MAX_PARAMETERS:
            raise ValueError(f"network '{self.name}' has {self.parameter_count:,} weights, more than the {MAX_PARAMETERS:,} allowed")

    @property
    def rep_dim(self) -> int:
        return self.dense_units[-1]

    @property
    def feature_size(self) -> int:
        """Side length of the feature map after all pooling steps."""
        return self.image_size // 2 ** len(self.conv_filters)

    @property
    def parameter_count(self) -> int:
        """Weights of phi, by arithmetic: known before anything is allocated."""
        k2, chans = self.kernel_size**2, (self.channels, *self.conv_filters)
        units = (self.conv_filters[-1] * self.feature_size**2, *self.dense_units)
        return sum(k2 * a * b for a, b in zip(chans[:-1], chans[1:])) + sum(a * b for a, b in zip(units[:-1], units[1:]))

    def layers(self) -> list[dict]:
        """Every layer of phi in order, as `Encoder` builds and runs them."""
        pad, in_ch, out = self.kernel_size // 2, self.channels, []
        for f in self.conv_filters:
            out += [
                {"type": "conv2d", "in_channels": in_ch, "out_channels": f, "kernel_size": self.kernel_size, "padding": pad, "bias": False},
                {"type": "batch_norm2d", "num_features": f, "eps": BN_EPS, "affine": False},
                {"type": "leaky_relu", "negative_slope": LEAKY_SLOPE},
                {"type": "max_pool2d", "kernel_size": 2},
            ]
            in_ch = f
        out.append({"type": "flatten"})
        units = (in_ch * self.feature_size**2, *self.dense_units)
        for i, (a, b) in enumerate(zip(units[:-1], units[1:])):
            out.append({"type": "linear", "in_features": a, "out_features": b, "bias": False})
            if i < len(self.dense_units) - 1:  # hidden dense layers; the output layer stays linear
                out += [
                    {"type": "batch_norm1d", "num_features": b, "eps": BN_EPS, "affine": False},
                    {"type": "leaky_relu", "negative_slope": LEAKY_SLOPE},
                ]
        return out

    def to_dict(self) -> dict:
        """The complete specification (JSON-ready): the fields plus the layers they imply."""
        return {
            "name": self.name,
            "channels": self.channels,
            "image_size": self.image_size,
            "conv_filters": list(self.conv_filters),
            "dense_units": list(self.dense_units),
            "kernel_size": self.kernel_size,
            "decoder": self.decoder,
            "layers": self.layers(),
        }

    @classmethod
    def from_dict(cls, d: object) -> LeNetSpec:
        """A spec from `to_dict` output, fully validated (ValueError); `layers`, if given, must match.

        Files from before ssd 0.4 have no `decoder`: theirs was the "upsample" one, the default."""
        if not isinstance(d, dict):
            raise ValueError(f"a network description must be a JSON object, got {_show(d)}")
        known = {f.name for f in fields(cls)}
        missing, unknown = sorted(known - {"kernel_size", "decoder"} - set(d)), sorted(map(str, set(d) - known - {"layers"}))
        if missing or unknown:
            problems = [f"lacks {missing}"] * bool(missing) + [f"has unknown keys {_show(unknown)}"] * bool(unknown)
            raise ValueError(f"the network description {' and '.join(problems)}")
        for key in ("conv_filters", "dense_units"):
            if not isinstance(d[key], list):
                raise ValueError(f"{key} must be a list of integers, got {_show(d[key])}")
        values = {k: d[k] for k in known if k in d}
        spec = cls(**{**values, "conv_filters": tuple(d["conv_filters"]), "dense_units": tuple(d["dense_units"])})
        if "layers" in d and not _same_json(d["layers"], spec.layers()):
            raise ValueError(f"inconsistent network description: its layers are not those of '{spec.name}' as its fields define it")
        return spec


def _same_json(a: object, b: object) -> bool:
    """Equal as JSON: types count (False is not 0, 2 is not 2.0)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return False


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
    return _native(256, (4, 8, 16, 32, 64, 128), 128)


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


def get_spec(name: str, channels: int | None = None, image_size: int | None = None, decoder: str | None = None) -> LeNetSpec:
    """The registered network, optionally for another input size, channel count or pretraining
    decoder (validated: ValueError)."""
    try:
        spec = _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown architecture '{name}'; choose one of: {', '.join(architectures())}") from None
    return replace(
        spec,
        channels=spec.channels if channels is None else channels,
        image_size=spec.image_size if image_size is None else image_size,
        decoder=spec.decoder if decoder is None else decoder,
    )


class BatchNorm2d(nn.BatchNorm2d):
    """Batch norm that runs layers of few channels in NCHW on the CPU.

    PyTorch's channels_last batch-norm kernels are slow for a handful of channels (the MNIST net has
    8 and 4): measured 1.15x faster MNIST training with this (benchmarks/speed.py). Same parameters
    and state dict as nn.BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and distributed.training_together():
            return distributed.synced_batch_norm(self, x)
        if self.num_features < 16 and x.device.type == "cpu" and not x.is_contiguous():
            return super().forward(x.contiguous()).contiguous(memory_format=torch.channels_last)
        return super().forward(x)


class BatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d, with statistics over all ranks when training together under torchrun."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and distributed.training_together():
            return distributed.synced_batch_norm(self, x)
        return super().forward(x)


def _bn(n: int, dims: int) -> nn.Module:
    return (BatchNorm2d if dims == 2 else BatchNorm1d)(n, eps=BN_EPS, affine=False)


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
    """"upsample": the encoder mirrored, a dense layer back to the last feature map, then nearest
    upsampling and a convolution where the encoder has a convolution and a pooling."""

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


@dataclass(frozen=True)
class DeconvStep:
    """One transposed convolution of the "transposed" decoder: its input is first brought to
    `size` x `size` by nearest upsampling (if it is not that size already)."""

    in_channels: int
    out_channels: int
    size: int
    padding: int


def deconv_steps(spec: LeNetSpec) -> list[DeconvStep]:
    """The original Deep SVDD code's decoder layout, for any spec.

    The code vector becomes a (units/16, 4, 4) grid; one transposed convolution (stride 1) per conv
    module plus one, through the channels of phi reversed. The first works on the grid upsampled
    to 4*2^j, the least that j doublings per conv module reach the image from; every later one on
    its input doubled, with the padding that lands on the encoder's size at that depth. For the
    paper's networks this is that code: MNIST 4 -> 8 -> 16 -> (pad 3) 14 -> 28, CIFAR-10
    4 -> 8 -> 16 -> 32. Where no padding of 0..k-1 lands there, the input is upsampled to the size
    itself.
    """
    k, n = spec.kernel_size, len(spec.conv_filters)
    chans = (spec.dense_units[0] // 16, *reversed(spec.conv_filters), spec.channels)
    j = 0
    while 4 * 2 ** (j + n) < spec.image_size:
        j += 1
    size = 4 * 2**j
    steps = [DeconvStep(chans[0], chans[1], size, k // 2)]
    for i in range(1, n + 1):
        target, doubled = spec.image_size >> (n - i), 2 * size
        shrink = doubled + k - 1 - target  # a stride-1 transposed conv adds k-1, its padding takes 2p
        if shrink % 2 == 0 and 0 <= shrink // 2 <= k - 1:
            steps.append(DeconvStep(chans[i], chans[i + 1], doubled, shrink // 2))
        else:
            steps.append(DeconvStep(chans[i], chans[i + 1], target, k // 2))
        size = target
    return steps


class TransposedDecoder(nn.Module):
    """"transposed" / "transposed-bn": the original Deep SVDD code's decoder (its MNIST and
    CIFAR-10 autoencoders), generalised by `deconv_steps`.

    Hidden dense layers of phi are mirrored (linear, batch norm, leaky ReLU), the code vector is
    reshaped to a 4x4 grid and goes through leaky ReLU, then transposed convolutions with batch norm
    and leaky ReLU between them, initialised Xavier-uniform with the leaky-ReLU gain as in that
    code. "transposed-bn" first batch-normalises the representation, as that code's CIFAR-10
    autoencoder does.
    """

    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.spec = spec
        self.code_bn = _bn(spec.rep_dim, 1) if spec.decoder == "transposed-bn" else None
        units = tuple(reversed(spec.dense_units))
        self.dense = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(units[:-1], units[1:]))
        self.dense_bns = nn.ModuleList(_bn(u, 1) for u in units[1:])
        self.steps = deconv_steps(spec)
        self.convs = nn.ModuleList(
            nn.ConvTranspose2d(st.in_channels, st.out_channels, spec.kernel_size, padding=st.padding, bias=False) for st in self.steps
        )
        for conv in self.convs:
            nn.init.xavier_uniform_(conv.weight, gain=nn.init.calculate_gain("leaky_relu"))
        self.conv_bns = nn.ModuleList(_bn(st.out_channels, 2) for st in self.steps[:-1])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.code_bn is not None:
            z = self.code_bn(z)
        for layer, bn in zip(self.dense, self.dense_bns):
            z = bn(layer(z))
        x = F.leaky_relu(z.view(z.shape[0], -1, 4, 4), LEAKY_SLOPE)
        for i, (conv, st) in enumerate(zip(self.convs, self.steps)):
            if x.shape[-1] != st.size:
                x = F.interpolate(x, size=(st.size, st.size), mode="nearest")
            x = conv(x)
            if i < len(self.conv_bns):
                x = F.leaky_relu(self.conv_bns[i](x), LEAKY_SLOPE)
        return torch.sigmoid(x)


# The decoders by name (LeNetSpec.decoder); the model file records which one pretrained a model.
DECODER_BUILDERS: dict[str, Callable[[LeNetSpec], nn.Module]] = {
    "upsample": Decoder,
    "transposed": TransposedDecoder,
    "transposed-bn": TransposedDecoder,
}


class AutoEncoder(nn.Module):
    def __init__(self, spec: LeNetSpec) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(spec), DECODER_BUILDERS[spec.decoder](spec)

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


