"""What training produces, as plain records: a trained model and a pretrained autoencoder.

The method builds them (core/pipeline.py) and scores with them (core/scoring.py); io/modelfile.py
reads and writes them as files. They live here, below both, so the method never depends on files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ssd_cli import __version__
from ssd_cli.core.config import Objective, Resize
from ssd_cli.core.nets import AutoEncoder, Encoder, LeNetSpec
from ssd_cli.core.patches import PatchSpec
from ssd_cli.core.preprocess import Preprocessor
from ssd_cli.core.tiles import TileSpec


class _Input:
    """The side images are decoded to: the network's input, the whole image of a patch model, or
    the tile of a tiled one (whose images are scaled and cut into tiles of that side)."""

    spec: LeNetSpec
    patch: PatchSpec | None
    tile: TileSpec | None

    @property
    def input_size(self) -> int:
        return self.patch.image_size if self.patch else self.spec.image_size


@dataclass
class SavedModel(_Input):
    spec: LeNetSpec
    objective: Objective
    nu: float
    eta: float
    preprocessor: Preprocessor
    c: torch.Tensor
    radius: float
    threshold: float
    threshold_rule: str  # how the threshold was chosen, for the user
    encoder_state: dict[str, torch.Tensor]
    training: dict = field(default_factory=dict)
    tool_version: str = __version__
    resize: Resize = Resize.SQUASH  # how images were fitted to the square input; scoring repeats it
    patch: PatchSpec | None = None  # patch-level model: phi sees patches of images decoded at patch.image_size
    tile: TileSpec | None = None  # tiled model: images are scaled and cut into tiles of patch.image_size

    def encoder(self, device: torch.device | str = "cpu") -> Encoder:
        enc = Encoder(self.spec)
        enc.load_state_dict(self.encoder_state)
        return enc.to(device).eval()


@dataclass
class SavedAutoencoder(_Input):
    spec: LeNetSpec
    preprocessor: Preprocessor
    state: dict[str, torch.Tensor]
    training: dict = field(default_factory=dict)
    tool_version: str = __version__
    resize: Resize = Resize.SQUASH
    patch: PatchSpec | None = None
    tile: TileSpec | None = None

    def autoencoder(self) -> AutoEncoder:
        ae = AutoEncoder(self.spec)
        ae.load_state_dict(self.state)
        return ae
