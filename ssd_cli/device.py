"""Choosing the torch device from the --device option."""

from __future__ import annotations

import torch

from ssd_cli.core.ranks import ranks
from ssd_cli.core import distributed
from ssd_cli.errors import UsageError


def resolve_device(spec: str = "auto") -> torch.device:
    """'auto' is CUDA when available, else CPU; 'cuda[:N]' must exist. Under torchrun this joins
    the process group, and CUDA means the GPU of this process's local rank."""
    device = parse_device(spec)
    if ranks().active:
        distributed.setup(use_cuda=device.type == "cuda")
        return distributed.rank_device(device)
    return device


def parse_device(spec: str) -> torch.device:
    """The device named, checked to exist here, without joining torchrun's process group."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device: '{spec}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type != "cpu":
        raise UsageError(f"--device: '{spec}' is not supported; use auto, cpu, cuda or cuda:N")
    return device
