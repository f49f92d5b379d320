"""The roles a training image can play, and the label y each gives it in the objectives.

Labels follow the paper: y = 0 for unlabeled samples, +1 for labeled normals, -1 for labeled
anomalies (given or synthetic), and -2 for outlier images (core/objectives.py). Code keys roles by
these neutral names; printed, a role is named as the `ssd` command spells it (`--unlabeled`),
which `errors.python_names` respells for callers of the Python API.
"""

from __future__ import annotations

from enum import Enum

UNLABELED, NORMAL, ANOMALY, OUTLIER = 0, 1, -1, -2


class Role(str, Enum):
    UNLABELED = "unlabeled"  # mostly normal, no label
    NORMALS = "normals"  # labeled normal
    ANOMALIES = "anomalies"  # labeled anomalous
    OUTLIERS = "outliers"  # unrelated images, anomalies with their own weight

    @property
    def label(self) -> int:
        """y of the role's samples (core/objectives.py)."""
        return _LABELS[self]

    def __str__(self) -> str:
        return f"--{self.value}"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


_LABELS = {Role.UNLABELED: UNLABELED, Role.NORMALS: NORMAL, Role.ANOMALIES: ANOMALY, Role.OUTLIERS: OUTLIER}
