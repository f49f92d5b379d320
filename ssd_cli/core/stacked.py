"""Train K runs of one architecture at once, so that the paper's small networks keep a GPU busy.

Each run k keeps everything a run trained alone has: its own data x_k and labels y_k, its own
initial weights, its own center c_k, its own shuffle (torch.Generator().manual_seed(seed_k), one
randperm(N) per epoch, exactly as `training.fit`), its own objective, nu and eta, and its own Adam
state. What the runs must share is what makes their steps line up: the architecture, the number of
training samples N and the OptimConfig (epochs, lr schedule, batch size, weight decay).

How: the K modules' parameters and buffers are stacked along a new leading dimension
(torch.func.stack_module_state) and one forward pass computes all K networks: the convolutional
part runs on (B, K*C, H, W) activations as grouped convolutions (groups=K), dense layers are
batched matrix products, and batch norm is F.batch_norm in train mode on (B, K*C, ...) with the
stacked running-statistics buffers (K, C) viewed as (K*C,), so each run's statistics are updated
in place exactly as its own BatchNorm module would (vmap over functional_call updates batched
buffers correctly too, but it reshuffles memory layouts around every layer: on a CPU it took
1.3-2.7x the time of training the runs one after the other). The loss that is backpropagated is the sum over runs of each run's mean batch loss; the
parameters are disjoint, so each slice of a stacked gradient is that run's own gradient. Adam
(weight decay included) is elementwise, so one Adam over the stacked tensors is K independent
Adams with one shared lr schedule.

The results equal K separate `training` runs up to floating-point rounding (a grouped convolution
or batched matmul may sum in another order than K single ones), not bit for bit: in float64 they
agree to ~1e-14 after training; in float32 to ~1e-6, except that Adam's first steps move every
weight by about +-lr whatever the gradient's size, so a weight whose gradient is ~0 can take
rounding noise's sign and differ by up to a few lr (seen on autoencoders).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state

from ssd_cli.core.config import Objective, OptimConfig, TrainConfig
from ssd_cli.core.nets import LEAKY_SLOPE, AutoEncoder, Classifier, Decoder, Encoder, TransposedDecoder
from ssd_cli.core.objectives import LOSSES, solve_radius, squared_distances
from ssd_cli.core.embedding import embed, init_center
from ssd_cli.core.training import DeepSVDDResult, EpochInfo, check_finite_loss, minibatches

StackedEpochCallback = Callable[[list[EpochInfo]], None]
"""Called once per epoch with one EpochInfo per run (in run order; `seconds` is the stack's epoch)."""

Forward = Callable[[torch.Tensor], torch.Tensor]
StackedBatchLoss = Callable[[Forward, torch.Tensor], torch.Tensor]


def stack_is_faster(device: torch.device | str) -> bool:
    """Whether stacking runs is expected to beat training them one after the other on `device`.

    Only on CUDA: there the paper's small networks leave the GPU mostly idle (kernel launches and
    Python overhead dominate), and a stack of K runs costs about as many launches as one run. This
    is expected, not measured: no GPU was available when this was written. On a 2-core CPU the
    arithmetic is the same either way; measured there (K=4, 2 epochs on 6,000 28x28 images, a
    shared machine) the stack took 0.9x-1.0x the sequential time for Deep SVDD and 0.8x-1.0x for
    autoencoder pretraining: too small a gain to leave the single-run reference path for.
    """
    return torch.device(device).type == "cuda"


class _Stack:
    """K networks of one architecture as stacked parameter and buffer tensors with one forward pass.

    Activations of the convolutional part are laid out as (B, K*C, H, W): run k owns channels
    k*C .. k*C+C-1, so a convolution is one grouped convolution (groups=K), and batch norm,
    leaky ReLU, max-pooling and upsampling act per channel exactly as in K separate networks. The
    batch-norm running statistics are the stacked buffers (K, C) viewed as (K*C,), so F.batch_norm
    updates them in place, per run. Dense layers are batched matrix products over (K, B, units).
    """

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        if not modules:
            raise ValueError("at least one run is needed")
        first = modules[0]
        if not isinstance(first, (Encoder, AutoEncoder, Classifier)):
            raise TypeError(f"cannot stack {type(first).__name__} networks (Encoder, AutoEncoder or Classifier only)")
        layout = {n: (t.shape, t.dtype, t.device) for n, t in _state(first)}
        for m in modules[1:]:
            if type(m) is not type(first) or _spec(m) != _spec(first):
                raise ValueError("stacked runs must share one architecture")
            if {n: (t.shape, t.dtype, t.device) for n, t in _state(m)} != layout:
                raise ValueError("stacked runs must have parameters and buffers of the same shapes, dtype and device")
        for name, bn in first.named_modules():
            if isinstance(bn, nn.modules.batchnorm._BatchNorm) and (bn.affine or not bn.track_running_stats):
                raise ValueError(f"batch norm {name} must be non-affine with running statistics")
        self.template, self.modules, self.k = first, list(modules), len(modules)
        self.params, self.buffers = stack_module_state(self.modules)  # parameters: leaves requiring grad

    def __len__(self) -> int:
        return self.k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (K, B, C, H, W), run k's batch in x[k]; train mode. Returns, per run in dim 0, phi(x)
        (K, B, rep_dim) for an Encoder, the reconstruction (K, B, C, H, W) for an AutoEncoder and
        the logits (K, B) for a Classifier."""
        k, b, c, height, width = x.shape
        # One copy into (B, K*C, H, W) with channels_last strides (the layout `fit` trains in).
        h = torch.empty((b, k * c, height, width), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        h.unflatten(1, (k, c)).copy_(x.transpose(0, 1))
        net = self.template
        if isinstance(net, Encoder):
            return self._encode(net, "", h)
        if isinstance(net, AutoEncoder):
            out = self._decode(net.decoder, "decoder.", self._encode(net.encoder, "encoder.", h))
            return out.unflatten(1, (k, c)).transpose(0, 1)
        z = self._encode(net.encoder, "encoder.", h)
        w, bias = self.params["head.weight"], self.params["head.bias"]
        return torch.baddbmm(bias.unsqueeze(1), z, w.transpose(1, 2)).squeeze(-1)

    def _encode(self, enc: Encoder, prefix: str, x: torch.Tensor) -> torch.Tensor:
        """(B, K*C, H, W) -> (K, B, rep_dim), as Encoder.forward."""
        for i, (conv, bn) in enumerate(zip(enc.convs, enc.conv_bns)):
            x = self._conv(f"{prefix}convs.{i}", conv, x)
            x = F.max_pool2d(F.leaky_relu(self._bn(f"{prefix}conv_bns.{i}", bn, x), LEAKY_SLOPE), 2)
        h = x.reshape(x.shape[0], self.k, -1).transpose(0, 1)  # (K, B, C*h*w), flattened per run
        for i, _ in enumerate(enc.dense):
            h = self._dense(f"{prefix}dense.{i}", h)
            if i < len(enc.dense_bns):
                h = F.leaky_relu(self._bn_dense(f"{prefix}dense_bns.{i}", enc.dense_bns[i], h), LEAKY_SLOPE)
        return h

    def _decode(self, dec: nn.Module, prefix: str, z: torch.Tensor) -> torch.Tensor:
        """(K, B, rep_dim) -> (B, K*C, H, W), as the decoder's forward."""
        if isinstance(dec, TransposedDecoder):
            return self._decode_transposed(dec, prefix, z)
        assert isinstance(dec, Decoder)
        for i, bn in enumerate(dec.dense_bns):
            z = F.leaky_relu(self._bn_dense(f"{prefix}dense_bns.{i}", bn, self._dense(f"{prefix}dense.{i}", z)), LEAKY_SLOPE)
        s = dec.spec
        x = z.transpose(0, 1).reshape(z.shape[1], self.k * s.conv_filters[-1], s.feature_size, s.feature_size)
        for i, conv in enumerate(dec.convs):
            x = self._conv(f"{prefix}convs.{i}", conv, F.interpolate(x, scale_factor=2, mode="nearest"))
            if i < len(dec.conv_bns):
                x = F.leaky_relu(self._bn(f"{prefix}conv_bns.{i}", dec.conv_bns[i], x), LEAKY_SLOPE)
        return torch.sigmoid(x)

    def _decode_transposed(self, dec: TransposedDecoder, prefix: str, z: torch.Tensor) -> torch.Tensor:
        """As TransposedDecoder.forward; a transposed convolution of K runs is one with groups=K."""
        if dec.code_bn is not None:
            z = self._bn_dense(f"{prefix}code_bn", dec.code_bn, z)
        for i, bn in enumerate(dec.dense_bns):
            z = self._bn_dense(f"{prefix}dense_bns.{i}", bn, self._dense(f"{prefix}dense.{i}", z))
        x = F.leaky_relu(z.transpose(0, 1).reshape(z.shape[1], -1, 4, 4), LEAKY_SLOPE)
        for i, (conv, st) in enumerate(zip(dec.convs, dec.steps)):
            if x.shape[-1] != st.size:
                x = F.interpolate(x, size=(st.size, st.size), mode="nearest")
            w = self.params[f"{prefix}convs.{i}.weight"].flatten(0, 1)  # (K*in, out, kh, kw)
            x = F.conv_transpose2d(x, w, None, conv.stride, conv.padding, conv.output_padding, self.k, conv.dilation)
            if i < len(dec.conv_bns):
                x = F.leaky_relu(self._bn(f"{prefix}conv_bns.{i}", dec.conv_bns[i], x), LEAKY_SLOPE)
        return torch.sigmoid(x)

    def _conv(self, name: str, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        # (K, O, C, kh, kw) -> (K*O, C, kh, kw) in channels_last, as `fit` converts a single model.
        w = self.params[f"{name}.weight"].flatten(0, 1).contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, w, None, conv.stride, conv.padding, conv.dilation, conv.groups * self.k)

    def _dense(self, name: str, h: torch.Tensor) -> torch.Tensor:
        """(K, B, in) -> (K, B, out) with run k's bias-free weight."""
        return torch.bmm(h, self.params[f"{name}.weight"].transpose(1, 2))

    def _bn(self, name: str, bn: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Train-mode batch norm over (B, K*C, ...), updating the stacked running statistics in place."""
        mean, var = self.buffers[f"{name}.running_mean"], self.buffers[f"{name}.running_var"]
        count = self.buffers[f"{name}.num_batches_tracked"]
        count.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(count[0])  # as _BatchNorm.forward
        return F.batch_norm(x, mean.view(-1), var.view(-1), None, None, True, momentum, bn.eps)

    def _bn_dense(self, name: str, bn: nn.Module, h: torch.Tensor) -> torch.Tensor:
        """Batch norm of (K, B, U) activations, through the (B, K*U) layout."""
        k, b, u = h.shape
        return self._bn(name, bn, h.transpose(0, 1).reshape(b, k * u)).view(b, k, u).transpose(0, 1)

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the stacked state into the K modules, leaving them as `training.fit` leaves a module."""
        for k, m in enumerate(self.modules):
            for name, t in m.named_parameters():
                t.copy_(self.params[name][k])
            for name, t in m.named_buffers():
                t.copy_(self.buffers[name][k])
            m.to(memory_format=torch.channels_last)
            m.train()


def _spec(m: nn.Module) -> object:
    return getattr(m, "spec", None) or getattr(getattr(m, "encoder", None), "spec", None)


def _state(m: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*m.named_parameters(), *m.named_buffers()]


class _Data:
    """Per-run batches x_k[idx_k] from K tensors of N samples each (or one tensor shared by all)."""

    def __init__(self, xs: Sequence[torch.Tensor] | torch.Tensor, k: int) -> None:
        if isinstance(xs, torch.Tensor):
            xs = [xs] * k
        if len(xs) != k:
            raise ValueError(f"{k} runs but {len(xs)} data tensors")
        n = len(xs[0])
        if any(len(x) != n for x in xs) or any(x.device != xs[0].device for x in xs):
            raise ValueError("stacked runs need the same number of training samples on the same device")
        self.n, self.device = n, xs[0].device
        if all(x is xs[0] for x in xs):
            self._shared, self._stacked = xs[0], None
        else:
            self._shared, self._stacked = None, torch.stack(list(xs))
        self._runs = torch.arange(k, device=self.device).unsqueeze(1)

    def take(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: (K, B) sample indices per run -> (K, B, ...)."""
        if self._shared is not None:
            return self._shared[idx]
        return self._stacked[self._runs, idx]


def _stack_labels(ys: Sequence[torch.Tensor] | torch.Tensor, k: int, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(ys, torch.Tensor) and ys.dim() == 1:
        ys = [ys] * k
    if len(ys) != k or any(len(y) != n for y in ys):
        raise ValueError(f"expected {k} label vectors of length {n}")
    return torch.stack([y.to(device) for y in ys])


def _fit_stacked(
    stack: _Stack,
    n: int,
    batch_loss: StackedBatchLoss,
    optim: OptimConfig,
    *,
    seeds: Sequence[int],
    device: torch.device,
    after_step: Callable[[], None] | None = None,
    on_epoch: StackedEpochCallback | None = None,
) -> list[list[float]]:
    """`training.fit` for K runs at once; returns the mean loss per epoch of each run.

    batch_loss(forward, idx) gets the stacked forward and the (K, B) batch indices (row k drawn
    from run k's own permutation) and returns the K batch losses.
    """
    k = len(stack)
    if len(seeds) != k:
        raise ValueError(f"{k} runs but {len(seeds)} seeds")
    params = list(stack.params.values())
    opt = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(optim.lr_milestones), gamma=optim.lr_gamma)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    losses: list[list[float]] = [[] for _ in range(k)]
    for epoch in range(optim.epochs):
        start, lr = time.perf_counter(), opt.param_groups[0]["lr"]
        perm = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device, non_blocking=True)
        total = torch.zeros(k, device=device)
        for idx in minibatches(perm, optim.batch_size, dim=1):
            loss = batch_loss(stack.forward, idx)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # disjoint parameters: each run gets its own gradient
            opt.step()
            if after_step is not None:
                after_step()
            total += loss.detach() * idx.shape[1]
        sched.step()
        seconds = time.perf_counter() - start
        for run, value in enumerate(total.tolist()):
            losses[run].append(value / n)
            check_finite_loss(losses[run][-1], epoch + 1)
        if on_epoch is not None:
            on_epoch([EpochInfo(epoch + 1, optim.epochs, run_losses[-1], seconds, lr) for run_losses in losses])
    stack.write_back()
    return losses


def _groups(keys: Sequence) -> list[tuple[object, list[int]]]:
    """Run indices grouped by key, in order of first appearance."""
    out: dict = {}
    for i, key in enumerate(keys):
        out.setdefault(key, []).append(i)
    return list(out.items())


def train_deep_svdd_stacked(
    encoders: Sequence[Encoder],
    xs: Sequence[torch.Tensor] | torch.Tensor,
    ys: Sequence[torch.Tensor] | torch.Tensor,
    cfgs: Sequence[TrainConfig],
    seeds: Sequence[int],
    centers: Sequence[torch.Tensor] | None = None,
    on_epoch: StackedEpochCallback | None = None,
) -> list[DeepSVDDResult]:
    """`training.train_deep_svdd` for K runs at once; the trained weights end up in `encoders`.

    Runs may mix objectives, nu and eta, but must share the architecture, N and cfg.optim. xs and
    ys are per-run tensors (or one tensor for all runs); centers default to init_center per run.
    """
    k = len(encoders)
    if len(cfgs) != k or len(seeds) != k:
        raise ValueError(f"{k} encoders need {k} configs and {k} seeds")
    optim = cfgs[0].optim
    if any(c.optim != optim for c in cfgs):
        raise ValueError("stacked runs must share one OptimConfig")
    data = _Data(xs, k)
    y = _stack_labels(ys, k, data.n, data.device)
    per_run_x = [xs] * k if isinstance(xs, torch.Tensor) else list(xs)
    if centers is None:
        centers = [init_center(e, xr, yr, c.center_eps) for e, xr, yr, c in zip(encoders, per_run_x, y, cfgs)]
    centers = [c.to(data.device) for c in centers]
    c_all = torch.stack(centers).unsqueeze(1)  # (K, 1, rep_dim)
    radius = torch.zeros(k, device=data.device)
    runs = torch.arange(k, device=data.device).unsqueeze(1)

    # Runs with equal (objective, nu, eta, eps) share one call of the loss and of the radius solver,
    # with the settings as Python floats exactly as in a single run; one group needs no gather.
    groups = _groups([(c.objective, c.nu, c.eta, c.eps) for c in cfgs])
    loss_groups: list[tuple[TrainConfig, torch.Tensor | slice]] = (
        [(cfgs[0], slice(None))]
        if len(groups) == 1
        else [(cfgs[g[0]], torch.tensor(g, device=data.device)) for _, g in groups]
    )
    soft = [(cfg, g) for cfg, g in loss_groups if cfg.objective is Objective.SOFT_BOUNDARY]
    inverse = torch.argsort(torch.tensor([i for _, g in groups for i in g], device=data.device))
    last: dict[str, torch.Tensor] = {}

    def batch_loss(forward: Forward, idx: torch.Tensor) -> torch.Tensor:
        dist = ((forward(data.take(idx)) - c_all) ** 2).sum(dim=-1)  # (K, B), as squared_distances
        yb = y[runs, idx]
        last["dist"], last["y"] = dist, yb
        parts = [LOSSES[cfg.objective](dist[g], yb[g], radius[g], cfg) for cfg, g in loss_groups]
        return parts[0] if len(parts) == 1 else torch.cat(parts)[inverse]

    def solve() -> None:
        for cfg, g in soft:
            radius[g] = solve_radius(last["dist"][g], last["y"][g], cfg.nu, cfg.eta).to(radius.dtype)

    stack = _Stack(encoders)
    losses = _fit_stacked(stack, data.n, batch_loss, optim, seeds=seeds, device=data.device, after_step=solve if soft else None, on_epoch=on_epoch)
    radii = radius.tolist()
    if optim.epochs > 0:
        for i, cfg in enumerate(cfgs):
            if cfg.objective is Objective.SOFT_BOUNDARY:
                # As train_deep_svdd: R solved once more on every training sample as scored (eval mode).
                dist = squared_distances(embed(encoders[i], per_run_x[i]), centers[i])
                radii[i] = float(solve_radius(dist, y[i], cfg.nu, cfg.eta).item())
    return [DeepSVDDResult(centers[i], float(radii[i]), losses[i]) for i in range(k)]


def pretrain_autoencoders_stacked(
    aes: Sequence[AutoEncoder],
    xs: Sequence[torch.Tensor] | torch.Tensor,
    optim: OptimConfig,
    seeds: Sequence[int],
    on_epoch: StackedEpochCallback | None = None,
) -> list[list[float]]:
    """`training.pretrain_autoencoder` for K runs at once; returns each run's losses per epoch."""
    k = len(aes)
    data = _Data(xs, k)

    def batch_loss(forward: Forward, idx: torch.Tensor) -> torch.Tensor:
        xb = data.take(idx)
        return ((forward(xb) - xb) ** 2).flatten(2).sum(dim=2).mean(dim=1)  # as reconstruction_loss

    return _fit_stacked(_Stack(aes), data.n, batch_loss, optim, seeds=seeds, device=data.device, on_epoch=on_epoch)


def train_classifiers_stacked(
    clfs: Sequence[Classifier],
    xs: Sequence[torch.Tensor] | torch.Tensor,
    ys: Sequence[torch.Tensor] | torch.Tensor,
    optim: OptimConfig,
    seeds: Sequence[int],
    on_epoch: StackedEpochCallback | None = None,
) -> list[list[float]]:
    """`training.train_classifier` for K runs at once; returns each run's losses per epoch."""
    k = len(clfs)
    data = _Data(xs, k)
    y = _stack_labels(ys, k, data.n, data.device)
    runs = torch.arange(k, device=data.device).unsqueeze(1)

    def batch_loss(forward: Forward, idx: torch.Tensor) -> torch.Tensor:
        xb = data.take(idx)
        target = (y[runs, idx] < 0).to(xb.dtype)  # 1 = anomalous
        return F.binary_cross_entropy_with_logits(forward(xb), target, reduction="none").mean(dim=1)

    return _fit_stacked(_Stack(clfs), data.n, batch_loss, optim, seeds=seeds, device=data.device, on_epoch=on_epoch)
