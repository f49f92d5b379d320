"""The outlier photos ssd ships: unrelated pictures that small-photo models see as anomalies by default.

Outlier exposure: a network that must keep a few hundred pictures of other things far from c learns
more of what makes its own images normal, with no labels from the user (docs/photos.md, "Outlier
images": one-class CIFAR-10 0.713 to 0.766 without labels, seed 0). The folder holds 416 colour crops
of 32 px, 52 from each of eight images bundled with scikit-image (seven photos: chelsea and cat are
one), written by `benchmarks/make_outlier_crops.py --seed 0` (byte-identical; scikit-image is not
needed to use them). Every source is free to ship: astronaut (NASA, public domain), chelsea and cat
(the same photo, CC0, Stefan van der Walt), coffee (CC0, Rachel Michetti), rocket (SpaceX, public
domain), hubble_deep_field (NASA, public domain), immunohistochemistry (no known copyright
restrictions) and colorwheel (drawn by scikit-image's authors, BSD-3-Clause, copyright the
scikit-image team). They enter training as any `--outliers` folder does: through the scan and the
decoder.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_OUTLIERS = Path(__file__).resolve().parent / "outlier_photos"
BUILTIN_OUTLIER_COUNT = 416
