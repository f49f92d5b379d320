"""Which rank this process is under torchrun, from the variables torchrun sets; no torch needed, so
the command line can ask before it imports any (core/distributed.py joins the process group).

Without torchrun (no WORLD_SIZE in the environment, or 1): one process, rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def active(self) -> bool:
        """More than one process: collectives are needed."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes every output and prints the tables."""
        return self.rank == 0

    def share(self, n: int) -> range:
        """This rank's contiguous share of n items in order (shares differ by at most one item), so
        concatenating the shares in rank order gives the items back in their order."""
        start = self.rank * n // self.world_size
        return range(start, (self.rank + 1) * n // self.world_size)

    def mine(self, items: T) -> T:
        """This rank's share of a sequence, tensor or ImageSet (a slice of it)."""
        share = self.share(len(items))
        return items[share.start : share.stop]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def ranks() -> Ranks:
    """This process's place, from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, ...)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return Ranks()
    return Ranks(_env_int("RANK", 0), world, _env_int("LOCAL_RANK", 0), _env_int("LOCAL_WORLD_SIZE", world))
