"""Options shared by several commands, and parsing helpers for option values."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ssd_cli.core.config import Preprocessing, Resize, Tiling
from ssd_cli.errors import UsageError


def parse_ints(text: str, option: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise UsageError(f"{option}: expected comma-separated integers, got '{text}'") from None


def milestones(text: str | None, option: str) -> tuple[int, ...] | None:
    return None if text is None else parse_ints(text, option)


DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA if available, else CPU), cpu, cuda or cuda:N.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for weights and shuffling, from 0 to 2^32-1; same seed + same input = same model on the CPU.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite the output file if it exists.")]
ArchOpt = Annotated[Optional[str], typer.Option("--arch", help="Network: the paper's mnist, fashion-mnist (28 px) or cifar10 (32 px), or lenet-64, lenet-128, lenet-256 for larger photos. Default: chosen from the images' size.")]
ChannelsOpt = Annotated[Optional[int], typer.Option("--channels", help="1 (grayscale) or 3 (colour). Default: colour when at least 10% of the sampled images are colour.")]
DecoderOpt = Annotated[Optional[str], typer.Option("--decoder", help="The autoencoder's decoder, used in pretraining only: upsample (a dense layer back to the feature map, nearest upsampling, convolutions), transposed (the original Deep SVDD code's: the code as a 4x4 grid, transposed convolutions) or transposed-bn (that, with the code batch-normalised, as that code's CIFAR-10 autoencoder). Default: the network's own.")]
SizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="Square input side in pixels. Default: the --arch's own, else the largest of 28 (grayscale only)/32/64/128/256 not above the images' median short side. For tiled large photos (--tiles), the tile side.")]
ResizeOpt = Annotated[Optional[Resize], typer.Option("--resize", help="Fitting images to the square input: squash (default; keeps all content, ignores aspect), crop (centre square) or pad (black bars). Not used for tiles, which keep the images' shape.")]
PatchOpt = Annotated[Optional[int], typer.Option("--patch-size", help="Patch-level model: phi sees patches of this side of the images at their input size (of each tile, for tiled large photos), an image scores as its worst patch, and each gets an anomaly map; 0 = whole images. Default: a quarter of the input side for inputs of 128 px and more (unless --arch is given or the objective is soft-boundary), else whole images.")]
PatchStrideOpt = Annotated[Optional[int], typer.Option("--patch-stride", help="Step of the scoring grid of patches (default: half the patch).")]
PatchesPerImageOpt = Annotated[int, typer.Option("--patches-per-image", help="Random patches of each image per epoch in patch-level training.")]
TilesOpt = Annotated[Tiling, typer.Option("--tiles", help="Large photos: auto (default) cuts images whose median short side, at --tile-scale, is over twice the input side into tiles of the input side (256 px by default) and trains and scores those at that scale, instead of squashing the images to the input; an image scores as its worst tile. on: always; off: never. Tiles need a patch-level model inside them.")]
TileScaleOpt = Annotated[Optional[float], typer.Option("--tile-scale", help="Scale of the images that tiles are cut from, in (0, 1]: 1 (default) = native resolution, 0.5 = half (4x fewer tiles, details half as large).")]
TilesPerImageOpt = Annotated[int, typer.Option("--tiles-per-image", help="Tiled training: at most this many random tiles of each image (seeded) are trained on, which bounds memory and time; scoring uses every tile.")]
PreOpt = Annotated[Optional[Preprocessing], typer.Option("--preprocessing", help="gcn (default, the paper's): global contrast normalisation (l1) + min-max scaling fitted on the unlabeled data; scale: pixels to [0,1].")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help="Mini-batch size (default: the schedule's: 200 for the paper's, 32 crops for patch-level models in ssd train, 64 for its one-class models of whole images up to 32 px).")]
DataRootOpt = Annotated[Optional[Path], typer.Option("--data-root", envvar="SSD_DATA_ROOT", help="Folder holding the built-in datasets in torchvision's layout (MNIST/raw, FashionMNIST/raw, cifar-10-batches-py or cifar10-jpeg). Default: ~/.cache/ssd/datasets.")]
DownloadOpt = Annotated[bool, typer.Option("--download", help="Let torchvision download missing built-in datasets into --data-root (needs internet).")]


CacheOpt = Annotated[Optional[Path], typer.Option("--cache", envvar="SSD_CACHE", help="Decode the training images once into a disk cache in this folder and train from it, so memory does not grow with the number of images (for sets larger than RAM). Reused while the files and input settings are unchanged. Not available with tiles (--tiles).")]
