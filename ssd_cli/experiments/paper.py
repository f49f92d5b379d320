"""The published numbers (Ruff et al., Appendix D, Tables 1-3) that benchmark runs are compared to.

They ship as ssd_cli/experiments/paper_results.csv: one row per table cell, AUC mean and std in percent
over 10 normal classes x 10 seeds.
"""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

from ssd_cli.experiments.protocol import Method, Scenario

# Our dataset names (and the CSV's own) to the names used in the CSV.
_CSV_DATASETS = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "cifar10": "cifar-10",
    "cifar-10": "cifar-10",
}

_Key = tuple[str, str, float, Method]


def paper_result(dataset: str, scenario: Scenario, level: float, method: Method) -> tuple[float, float] | None:
    """(mean, std) AUC in % reported by the paper, or None where the paper has no such cell.

    Datasets the paper did not use give None too, so that reports on other data simply have no
    reference column.
    """
    name = _CSV_DATASETS.get(dataset.lower())
    if name is None:
        return None
    return _paper_table().get((scenario.varied_column, name, float(level), method))


@functools.cache
def _paper_table() -> dict[_Key, tuple[float, float]]:
    text = resources.files("ssd_cli.experiments").joinpath("paper_results.csv").read_text(encoding="utf-8")
    return {
        (row["varied"], row["dataset"], float(row["level"]), Method(row["method"])): (
            float(row["auc_mean"]),
            float(row["auc_std"]),
        )
        for row in csv.DictReader(io.StringIO(text))
    }
