"""The networks of Appendix B and the properties that rule out a hypersphere collapse (Appendix A)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ssd_cli import nets
from ssd_cli.nets import AutoEncoder, Encoder, get_spec

ARCHS = nets.architectures()

# Appendix B: (channels, image size, conv filters, dense units)
PAPER = {
    "mnist": (1, 28, [8, 4], [32]),
    "fashion-mnist": (1, 28, [16, 32], [64, 32]),
    "cifar10": (3, 32, [32, 64, 128], [128]),
}

BOUNDED_MODULES = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Hardsigmoid, nn.Softsign, nn.Softmax, nn.LogSigmoid, nn.Tanhshrink)
BOUNDED_FUNCTIONS = {"sigmoid", "tanh", "hardtanh", "relu6", "hardsigmoid", "softsign", "softmax", "logsigmoid", "clamp", "clip", "erf"}


class Recorder(TorchFunctionMode):
    """Records every torch function a forward pass calls, with its non-tensor arguments."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple, dict]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.calls.append((getattr(func, "__name__", str(func)), args[1:], kwargs))
        return func(*args, **kwargs)

    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


def make(arch: str, **kw) -> tuple[nets.LeNetSpec, Encoder, torch.Tensor]:
    spec = get_spec(arch, **kw)
    torch.manual_seed(0)
    enc = Encoder(spec)
    x = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    return spec, enc, x


def test_registry_has_the_papers_networks() -> None:
    assert set(ARCHS) == set(PAPER)


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_has_no_bias_anywhere(arch: str) -> None:
    _, enc, _ = make(arch)
    names = [name for name, _ in enc.named_parameters()]
    assert names, "the encoder has no parameters at all"
    assert not [n for n in names if "bias" in n], names
    for m in enc.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d)):
            assert m.bias is None, f"{m} has a bias"
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            assert m.affine is False, f"{m} has an affine shift, which acts as a bias"
            assert m.weight is None and m.bias is None
        assert not isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d)), f"{m} may carry a bias"


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_has_no_bounded_activation(arch: str) -> None:
    _, enc, x = make(arch)
    assert not [m for m in enc.modules() if isinstance(m, BOUNDED_MODULES)]
    source = inspect.getsource(Encoder.forward).lower()
    for word in ("sigmoid", "tanh", "clamp", "hardtanh"):
        assert word not in source
    with Recorder() as rec:
        enc(x)
    assert not BOUNDED_FUNCTIONS & set(rec.names()), rec.names()


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_output_is_unbounded_and_bias_free(arch: str) -> None:
    """In eval mode (fresh BN statistics) phi is positively homogeneous: phi(k x) = k phi(x).

    That fails with any bias term and with any bounded activation.
    """
    _, enc, x = make(arch)
    enc.eval()
    with torch.no_grad():
        out = enc(x)
        big = enc(1000.0 * x)
        assert out.abs().max() > 0
        torch.testing.assert_close(big, 1000.0 * out, rtol=1e-4, atol=1e-4)
        assert big.norm() > 500 * out.norm()  # no saturation
        assert torch.equal(enc(torch.zeros_like(x)), torch.zeros_like(out))  # 0 maps to 0: no bias


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_scaling_last_dense_layer_scales_output(arch: str, mode: str) -> None:
    _, enc, x = make(arch)
    enc.train(mode == "train")
    with torch.no_grad():
        before = enc(x)
        enc.dense[-1].weight.mul_(100.0)
        after = enc(x)
    torch.testing.assert_close(after, 100.0 * before, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_appendix_b_architecture(arch: str) -> None:
    channels, size, filters, units = PAPER[arch]
    spec, enc, x = make(arch)
    assert (spec.channels, spec.image_size) == (channels, size)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    dense = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == filters
    assert [c.in_channels for c in convs] == [channels, *filters[:-1]]
    assert all(c.kernel_size == (5, 5) for c in convs)
    assert [d.out_features for d in dense] == units
    assert spec.rep_dim == units[-1]
    assert enc(x).shape == (2, units[-1])
    # each conv module ends in a 2x2 max-pool
    with Recorder() as rec:
        enc(x)
    pools = [(args, kw) for name, args, kw in rec.calls if name == "max_pool2d"]
    assert len(pools) == len(filters)
    assert all(args[0] in (2, (2, 2)) for args, _ in pools)


@pytest.mark.parametrize("arch", ARCHS)
def test_leaky_relu_slope_is_0_1(arch: str) -> None:
    assert nets.LEAKY_SLOPE == 0.1
    _, enc, x = make(arch)
    with Recorder() as rec:
        enc(x)
    slopes = [kw.get("negative_slope", args[0] if args else None) for name, args, kw in rec.calls if name == "leaky_relu"]
    _, _, filters, units = PAPER[arch]
    assert len(slopes) == len(filters) + len(units) - 1  # after every conv and every hidden dense layer
    assert slopes and all(s == 0.1 for s in slopes), slopes
    assert "relu" not in rec.names()


@pytest.mark.parametrize("arch", ARCHS)
def test_autoencoder_reconstructs_input_shape(arch: str) -> None:
    spec = get_spec(arch)
    torch.manual_seed(0)
    ae = AutoEncoder(spec)
    x = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    out = ae(x)
    assert out.shape == x.shape
    assert ae.encoder(x).shape == (2, spec.rep_dim)
    # the autoencoder's encoder is exactly phi, so its weights can initialise phi
    assert Encoder(spec).load_state_dict(ae.encoder.state_dict()) is not None


@pytest.mark.parametrize(
    "arch,channels,size",
    [("mnist", 3, 32), ("mnist", 1, 64), ("fashion-mnist", 3, 16), ("cifar10", 1, 16), ("cifar10", 3, 8), ("mnist", None, 12)],
)
def test_get_spec_other_sizes_and_channels(arch: str, channels: int | None, size: int) -> None:
    spec = get_spec(arch, channels, size)
    assert spec.image_size == size
    assert spec.channels == (channels or PAPER[arch][0])
    assert spec.conv_filters == tuple(PAPER[arch][2]) and spec.dense_units == tuple(PAPER[arch][3])
    x = torch.rand(2, spec.channels, size, size)
    assert Encoder(spec)(x).shape == (2, spec.rep_dim)
    assert AutoEncoder(spec)(x).shape == x.shape


@pytest.mark.parametrize(
    "arch,channels,size",
    [
        ("mnist", 2, None),
        ("mnist", 4, None),
        ("mnist", 0, None),
        ("mnist", -1, None),
        ("mnist", None, 30),
        ("mnist", None, 2),
        ("mnist", None, 0),
        ("mnist", None, -28),
        ("cifar10", None, 28),
        ("cifar10", None, 4),
        ("resnet", None, None),
    ],
)
def test_get_spec_rejects_bad_values(arch: str, channels: int | None, size: int | None) -> None:
    with pytest.raises(ValueError):
        get_spec(arch, channels, size)


def test_unknown_architecture_message_lists_choices() -> None:
    with pytest.raises(ValueError, match="mnist"):
        get_spec("lenet-9000")


def test_mnist_encoder_parameter_count() -> None:
    enc = Encoder(get_spec("mnist"))
    # conv 1->8 5x5: 200, conv 8->4 5x5: 800, dense 4*7*7 -> 32: 6272
    assert sum(p.numel() for p in enc.parameters()) == 200 + 800 + 6272 == 7272
