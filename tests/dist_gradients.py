"""Run by tests/test_distributed.py under torchrun: one training step's loss gradient, computed by
the ranks together (each on its share of the mini-batch, batch norm synchronised, gradients summed)
must equal the gradient one process computes on the whole mini-batch. Prints 'ok' on rank 0."""

from __future__ import annotations

import copy
import sys

import torch

from ssd_cli.core.ranks import ranks
from ssd_cli.core import distributed
from ssd_cli.core.nets import AutoEncoder, Encoder, get_spec
from ssd_cli.core.objectives import squared_distances
from ssd_cli.core.training import reconstruction_loss


def gradients(model: torch.nn.Module, loss_of, x: torch.Tensor, together: bool) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    if together:
        mine = ranks().mine(x)
        (loss_of(model, mine) * (len(mine) / len(x))).backward()
        distributed.sum_gradients([p for p in model.parameters()])
    else:
        loss_of(model, x).backward()
    return [p.grad.clone() for p in model.parameters()]


def main() -> None:
    torch.manual_seed(0)
    distributed.setup(use_cuda=False)
    spec = get_spec("mnist")
    x = torch.randn(13, 1, 28, 28)  # odd: the ranks' shares differ in size
    c = torch.randn(spec.rep_dim)
    cases = {
        "encoder": (Encoder(spec), lambda m, xb: squared_distances(m(xb), c).mean()),
        "autoencoder": (AutoEncoder(spec), lambda m, xb: reconstruction_loss(m(xb), xb)),
    }
    for name, (model, loss_of) in cases.items():
        model.train()
        alone = copy.deepcopy(model)
        reference = gradients(alone, loss_of, x, together=False)
        with distributed.data_parallel():
            shared = gradients(model, loss_of, x, together=True)
        for g, h in zip(reference, shared):
            # float rounding: the sums run in another order; relative to the tensor's own scale
            error = (g - h).abs().max().item() / max(g.abs().max().item(), 1e-12)
            if error > 1e-5:
                print(f"{name}: gradients differ by {error:.3g} of their scale", file=sys.stderr)
                sys.exit(1)
        stats = [(a, b) for a, b in zip(alone.buffers(), model.buffers()) if a.is_floating_point()]
        if not all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in stats):
            print(f"{name}: batch-norm running statistics differ", file=sys.stderr)
            sys.exit(1)
    if ranks().is_main:
        print("ok")


if __name__ == "__main__":
    main()
