"""The networks of Appendix B and the properties that rule out a hypersphere collapse (Appendix A)."""

from __future__ import annotations

import inspect
import json
import math
from dataclasses import replace
from typing import NamedTuple

import pytest
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ssd_cli.core import nets
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec, get_spec

ARCHS = nets.architectures()

# Appendix B: (channels, image size, conv filters, dense units)
PAPER = {
    "mnist": (1, 28, [8, 4], [32]),
    "fashion-mnist": (1, 28, [16, 32], [64, 32]),
    "cifar10": (3, 32, [32, 64, 128], [128]),
}
# The networks for native-resolution photos, built by the paper's rules (docs/method.md).
LENET = [a for a in ARCHS if a.startswith("lenet-")]
# Side of the last feature map: the paper's 7x7 (28 / 4) and 4x4 (32 / 8); every lenet-N ends on 4x4.
FEATURE_MAP = {"mnist": 7, "fashion-mnist": 7, "cifar10": 4, **{a: 4 for a in LENET}}

BOUNDED_MODULES = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.ReLU6, nn.Hardsigmoid, nn.Softsign, nn.Softmax, nn.LogSigmoid, nn.Tanhshrink)
BOUNDED_FUNCTIONS = {"sigmoid", "tanh", "hardtanh", "relu6", "hardsigmoid", "softsign", "softmax", "logsigmoid", "clamp", "clip", "erf"}


class Call(NamedTuple):
    name: str
    input: object  # the first argument (the tensor a layer is applied to)
    args: tuple  # the other positional arguments
    kwargs: dict
    output: object


class Recorder(TorchFunctionMode):
    """Records every torch function a forward pass calls, with its arguments and result."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        self.calls.append(Call(getattr(func, "__name__", str(func)), args[0] if args else None, args[1:], kwargs, out))
        return out

    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def of(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


def make(arch: str, **kw) -> tuple[nets.LeNetSpec, Encoder, torch.Tensor]:
    spec = get_spec(arch, **kw)
    torch.manual_seed(0)
    enc = Encoder(spec)
    x = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    return spec, enc, x


def record(enc: nn.Module, x: torch.Tensor) -> Recorder:
    with torch.no_grad(), Recorder() as rec:
        enc(x)
    return rec


def test_registry_has_the_papers_networks_and_the_lenet_family() -> None:
    assert set(PAPER) <= set(ARCHS)
    assert {"lenet-64", "lenet-128", "lenet-256"} <= set(LENET)
    assert set(ARCHS) == set(PAPER) | set(LENET)  # so the family tests below cover every network
    assert all(get_spec(a).name == a for a in ARCHS)


def test_network_for_size_picks_a_network_made_for_that_size() -> None:
    for step in nets.SIZE_STEPS:
        assert get_spec(nets.network_for_size(step)).image_size == step
    assert nets.network_for_size(1) == "mnist"
    assert nets.network_for_size(29) == "cifar10"
    assert nets.network_for_size(100) == "lenet-128"
    assert nets.network_for_size(5000) == "lenet-256"


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


@pytest.mark.parametrize("arch", PAPER)
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
    pools = record(enc, x).of("max_pool2d")
    assert len(pools) == len(filters)
    assert all(c.args[0] in (2, (2, 2)) for c in pools)


@pytest.mark.parametrize("arch", ARCHS)
def test_leaky_relu_slope_is_0_1(arch: str) -> None:
    assert nets.LEAKY_SLOPE == 0.1
    spec, enc, x = make(arch)
    rec = record(enc, x)
    slopes = [c.kwargs.get("negative_slope", c.args[0] if c.args else None) for c in rec.of("leaky_relu")]
    assert len(slopes) == len(spec.conv_filters) + len(spec.dense_units) - 1  # after every conv and hidden dense layer
    assert slopes and all(s == 0.1 for s in slopes), slopes
    assert "relu" not in rec.names()


@pytest.mark.parametrize("decoder", nets.DECODERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_autoencoder_reconstructs_input_shape(arch: str, decoder: str) -> None:
    spec = replace(get_spec(arch), decoder=decoder)
    torch.manual_seed(0)
    ae = AutoEncoder(spec)
    x = torch.rand(2, spec.channels, spec.image_size, spec.image_size)
    out = ae(x)
    assert out.shape == x.shape
    assert ae.encoder(x).shape == (2, spec.rep_dim)
    # the autoencoder's encoder is exactly phi, so its weights can initialise phi
    assert Encoder(spec).load_state_dict(ae.encoder.state_dict()) is not None


def test_every_decoder_has_a_builder() -> None:
    assert tuple(nets.DECODER_BUILDERS) == nets.DECODERS


@pytest.mark.parametrize("size", [8, 12, 16, 20, 28, 32, 36, 48, 56, 100, 128])
@pytest.mark.parametrize("decoder", ["transposed", "transposed-bn"])
def test_transposed_decoder_reaches_any_input_size(size: int, decoder: str) -> None:
    spec = LeNetSpec("x", channels=1, image_size=size, conv_filters=(8, 4), dense_units=(32,), decoder=decoder)
    assert AutoEncoder(spec)(torch.rand(2, 1, size, size)).shape == (2, 1, size, size)


def test_transposed_decoder_is_the_original_codes() -> None:
    """The Deep SVDD code's MNIST autoencoder: (2, 4, 4) grid, upsample, deconv 2->4 (pad 2), upsample
    to 16, deconv 4->8 with pad 3 (16 -> 14), upsample, deconv 8->1; CIFAR-10: (8, 4, 4) grid, deconv
    8->128 at 4x4, then upsample and deconv to 64, 32 and 3 channels; no bias; Xavier-uniform with the
    leaky-ReLU gain; the CIFAR-10 one batch-normalises the code."""
    mnist = replace(get_spec("mnist"), decoder="transposed")
    steps = [(st.in_channels, st.out_channels, st.size, st.padding) for st in nets.deconv_steps(mnist)]
    assert steps == [(2, 4, 8, 2), (4, 8, 16, 3), (8, 1, 28, 2)]
    cifar = replace(get_spec("cifar10"), decoder="transposed-bn")
    steps = [(st.in_channels, st.out_channels, st.size, st.padding) for st in nets.deconv_steps(cifar)]
    assert steps == [(8, 128, 4, 2), (128, 64, 8, 2), (64, 32, 16, 2), (32, 3, 32, 2)]
    torch.manual_seed(0)
    dec = AutoEncoder(cifar).decoder
    assert isinstance(dec.code_bn, nn.BatchNorm1d) and not dec.code_bn.affine
    assert all(isinstance(c, nn.ConvTranspose2d) and c.bias is None for c in dec.convs)
    w = dec.convs[1].weight  # (128, 64, 5, 5): Xavier bound gain * sqrt(6 / (fan_in + fan_out))
    bound = nn.init.calculate_gain("leaky_relu") * (6 / (64 * 25 + 128 * 25)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert AutoEncoder(mnist).decoder.code_bn is None


def test_decoder_is_recorded_and_old_descriptions_load_with_upsample() -> None:
    spec = replace(get_spec("cifar10"), decoder="transposed-bn")
    assert LeNetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    old = {k: v for k, v in get_spec("mnist").to_dict().items() if k != "decoder"}
    assert LeNetSpec.from_dict(old).decoder == "upsample"


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


# --- every registered network, the lenet-N family -----------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_ends_on_the_intended_feature_map(arch: str) -> None:
    spec, enc, x = make(arch)
    side = FEATURE_MAP[arch]
    assert spec.feature_size == side
    last_pool = record(enc, x).of("max_pool2d")[-1].output
    assert last_pool.shape == (2, spec.conv_filters[-1], side, side)
    assert enc.dense[0].in_features == spec.conv_filters[-1] * side * side


@pytest.mark.parametrize("arch", ARCHS)
def test_every_conv_module_follows_the_paper(arch: str) -> None:
    """5x5 convolutions (padding 2), batch norm without affine parameters and eps 1e-4, and a 2x2
    max-pool after each module: for the paper's networks and the ones built by its rules alike."""
    spec, enc, x = make(arch)
    convs = [m for m in enc.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(spec.conv_filters)
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) and c.bias is None for c in convs)
    bns = [m for m in enc.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == len(spec.conv_filters) + len(spec.dense_units) - 1
    assert all(bn.eps == 1e-4 and bn.affine is False for bn in bns)
    rec = record(enc, x)
    assert [c.args[0] for c in rec.of("max_pool2d")] == [2] * len(spec.conv_filters)
    assert [c.kwargs["eps"] for c in rec.of("batch_norm")] == [1e-4] * len(bns)
    dense = [m for m in enc.modules() if isinstance(m, nn.Linear)]
    assert dense[-1] is enc.dense[-1] and dense[-1].bias is None and dense[-1].out_features == spec.rep_dim
    assert rec.calls[-1].name == "linear"  # phi ends on the bias-free dense layer, no activation after it


@pytest.mark.parametrize("arch", LENET)
def test_lenet_family_adds_one_module_per_doubling(arch: str) -> None:
    side = int(arch.removeprefix("lenet-"))
    spec = get_spec(arch)
    assert (spec.channels, spec.image_size, spec.kernel_size) == (3, side, 5)
    doublings = math.log2(side / 32)
    assert doublings == int(doublings) >= 1
    assert len(spec.conv_filters) == len(PAPER["cifar10"][2]) + int(doublings)
    assert len(spec.dense_units) == 1  # as cifar10: one bias-free dense output layer


# --- the network description (model files store it) --------------------------------------------


def observed_layers(enc: Encoder, x: torch.Tensor) -> list[dict]:
    """The layers a forward pass actually runs, in the vocabulary of LeNetSpec.layers()."""
    out = []
    for c in record(enc, x).calls:
        if c.name == "conv2d":
            w, bias, _, padding = c.args[:4]
            assert w.shape[2] == w.shape[3] and padding[0] == padding[1]
            out.append({"type": "conv2d", "in_channels": w.shape[1], "out_channels": w.shape[0], "kernel_size": w.shape[2], "padding": padding[0], "bias": bias is not None})
        elif c.name == "batch_norm":
            affine = c.kwargs["weight"] is not None or c.kwargs["bias"] is not None
            out.append({"type": f"batch_norm{c.input.dim() - 2 or 1}d", "num_features": c.input.shape[1], "eps": c.kwargs["eps"], "affine": affine})
        elif c.name == "leaky_relu":
            out.append({"type": "leaky_relu", "negative_slope": c.kwargs["negative_slope"]})
        elif c.name == "max_pool2d":
            out.append({"type": "max_pool2d", "kernel_size": c.args[0]})
        elif c.name == "flatten":
            out.append({"type": "flatten"})
        elif c.name == "linear":
            w, bias = c.args[0], c.args[1] if len(c.args) > 1 else c.kwargs.get("bias")
            out.append({"type": "linear", "in_features": w.shape[1], "out_features": w.shape[0], "bias": bias is not None})
    return out


@pytest.mark.parametrize("arch,kw", [(a, {}) for a in ARCHS] + [("mnist", {"channels": 3, "image_size": 64}), ("cifar10", {"channels": 1, "image_size": 16})])
def test_layers_describe_what_the_encoder_runs(arch: str, kw: dict) -> None:
    spec, enc, x = make(arch, **kw)
    enc.eval()
    assert spec.layers() == observed_layers(enc, x)
    assert spec.to_dict()["layers"] == spec.layers()


@pytest.mark.parametrize("arch", ARCHS)
def test_parameter_count_is_the_encoders(arch: str) -> None:
    spec, enc, _ = make(arch)
    assert spec.parameter_count == sum(p.numel() for p in enc.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_to_dict_from_dict_round_trip(arch: str) -> None:
    spec = get_spec(arch)
    d = json.loads(json.dumps(spec.to_dict()))  # as a model file stores it
    assert set(d) == {"name", "channels", "image_size", "conv_filters", "dense_units", "kernel_size", "decoder", "layers"}
    assert (d["name"], d["channels"], d["image_size"], d["kernel_size"]) == (arch, spec.channels, spec.image_size, 5)
    assert d["conv_filters"] == list(spec.conv_filters) and d["dense_units"] == list(spec.dense_units)
    assert LeNetSpec.from_dict(d) == spec
    del d["layers"]
    assert LeNetSpec.from_dict(d) == spec


def test_from_dict_needs_no_registry() -> None:
    """Any network loads from its fields: one not registered (and named like none) included."""
    spec = LeNetSpec("my-net.v2", channels=3, image_size=96, conv_filters=(8, 8, 16, 16, 32), dense_units=(64, 16), kernel_size=3)
    assert "my-net.v2" not in ARCHS
    loaded = LeNetSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert loaded == spec
    x = torch.rand(2, 3, 96, 96)
    assert Encoder(loaded)(x).shape == (2, 16)
    assert loaded.layers() == observed_layers(Encoder(loaded).eval(), x)


def changed(**changes) -> dict:
    """The mnist description with some entries changed (None deletes one)."""
    d = json.loads(json.dumps(get_spec("mnist").to_dict()))
    for key, value in changes.items():
        if value is None:
            del d[key]
        else:
            d[key] = value
    return d


def with_layer(index: int, **changes) -> dict:
    d = changed()
    d["layers"][index].update(changes)
    return d


@pytest.mark.parametrize(
    "d,needle",
    [
        ([1, 2], "JSON object"),
        (changed(channels=2), "channels"),
        (changed(channels=True), "channels"),
        (changed(channels="1"), "channels"),
        (changed(image_size=30, layers=None), "multiple of 4"),
        (changed(image_size=28.0), "image size"),
        (changed(image_size=0), "image size"),
        (changed(image_size=-28), "image size"),
        (changed(image_size=2048), "image size"),
        (changed(image_size=10**400), "image size"),
        (changed(conv_filters=[8] * 9, image_size=512), "conv filters"),
        (changed(conv_filters=[], layers=None), "conv filters"),
        (changed(conv_filters=[8, 4096]), "conv filters"),
        (changed(conv_filters="8,4"), "conv_filters"),
        (changed(conv_filters=[8, 4.0]), "conv filters"),
        (changed(dense_units=[70000]), "dense units"),
        (changed(dense_units=[32] * 9), "dense units"),
        (changed(dense_units=[]), "dense units"),
        (changed(kernel_size=4), "odd"),
        (changed(kernel_size=31), "kernel size"),
        (changed(conv_filters=[1024, 1024], dense_units=[65536], image_size=28), "weights"),  # 3.3G weights
        (changed(name="[bold]x"), "name"),
        (changed(name=""), "name"),
        (changed(name=7), "name"),
        (changed(channels=None), "channels"),
        (changed(extra=1), "extra"),
        (changed(decoder="deconv"), "decoder"),
        (changed(decoder=1), "decoder"),
        (changed(decoder="transposed", dense_units=[40], layers=None), "multiple of 16"),
        (changed(layers=[]), "inconsistent"),
        (changed(layers="conv"), "inconsistent"),
        (with_layer(0, bias=True), "inconsistent"),
        (with_layer(0, bias=0), "inconsistent"),  # equal in Python, not as JSON
        (with_layer(2, negative_slope=0.2), "inconsistent"),
        (with_layer(1, eps=1e-5), "inconsistent"),
        (with_layer(1, affine=True), "inconsistent"),
        (with_layer(0, out_channels=9), "inconsistent"),
        (changed(image_size=56), "inconsistent"),  # the fields changed, the layers (dense input) did not
    ],
)
def test_from_dict_refuses_bad_descriptions(d: object, needle: str) -> None:
    with pytest.raises(ValueError) as info:
        LeNetSpec.from_dict(d)
    assert needle in str(info.value), str(info.value)
    assert len(str(info.value)) < 300


def test_size_bounds_apply_to_registered_networks_too() -> None:
    """A model that trains must load: get_spec refuses what a model file may not hold."""
    with pytest.raises(ValueError, match="weights"):
        get_spec("cifar10", 3, 1024)
    with pytest.raises(ValueError, match="image size"):
        get_spec("lenet-256", 3, 2048)
    assert get_spec("lenet-256", 3, 1024).parameter_count < nets.MAX_PARAMETERS
