import json
import warnings

import numpy as np
import pytest

from ssd_cli.errors import InputError
from ssd_cli.metrics import auroc, compute_metrics

NORMAL_FIRST = np.array([False, False, True, True])


def test_perfect_ranking() -> None:
    m = compute_metrics(np.array([0.1, 0.2, 0.8, 0.9]), NORMAL_FIRST, threshold=0.5)
    assert m.auroc == 1.0
    assert m.auprc == 1.0
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 0, 2, 0)
    assert (m.precision, m.recall, m.f1) == (1.0, 1.0, 1.0)


def test_reversed_ranking() -> None:
    scores = np.array([0.9, 0.8, 0.2, 0.1])
    assert auroc(scores, NORMAL_FIRST) == 0.0
    # Anomalies ranked 3rd and 4th: precision 1/3 at recall 1/2, then 2/4 at recall 1.
    assert compute_metrics(scores, NORMAL_FIRST, 0.5).auprc == pytest.approx(0.5 * 1 / 3 + 0.5 * 2 / 4)


def test_tied_scores_are_a_coin_flip() -> None:
    scores = np.full(4, 0.3)
    m = compute_metrics(scores, NORMAL_FIRST, threshold=0.3)
    assert m.auroc == 0.5
    assert m.auprc == 0.5  # the share of anomalies


def test_counts_at_threshold() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    is_anomaly = np.array([False, False, True, True, True, False])
    m = compute_metrics(scores, is_anomaly, threshold=0.3)
    assert (m.tp, m.fp, m.tn, m.fn) == (3, 1, 2, 0)
    assert (m.n_normal, m.n_anomalous) == (3, 3)
    assert m.precision == pytest.approx(3 / 4)
    assert m.recall == 1.0
    assert m.f1 == pytest.approx(2 * 0.75 / 1.75)
    # 8 of the 9 (anomaly, normal) pairs are ordered correctly: 0.35 < 0.4 is the exception.
    assert m.auroc == pytest.approx(8 / 9)


def test_score_equal_to_threshold_is_not_flagged() -> None:
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.2])
    is_anomaly = np.array([0, 0, 1, 1, 1, 0])  # 0/1 works as well as booleans
    m = compute_metrics(scores, is_anomaly, threshold=0.35)
    assert (m.tp, m.fp, m.tn, m.fn) == (2, 1, 2, 1)
    assert m.precision == pytest.approx(2 / 3)
    assert m.f1 == pytest.approx(2 / 3)


def test_nothing_flagged_gives_zero_precision_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compute_metrics(np.array([0.1, 0.2, 0.8, 0.9]), NORMAL_FIRST, threshold=10.0)
    assert (m.tp, m.fp, m.precision, m.recall, m.f1) == (0, 0, 0.0, 0.0, 0.0)


def test_to_dict_is_json_ready() -> None:
    d = compute_metrics(np.array([0.1, 0.2, 0.8, 0.9]), NORMAL_FIRST, threshold=0.5).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["threshold"] == 0.5 and d["tp"] == 2


@pytest.mark.parametrize("labels", [np.zeros(4, bool), np.ones(4, bool)])
def test_one_class_only_is_an_input_error(labels: np.ndarray) -> None:
    with pytest.raises(InputError, match="both normal and anomalous"):
        compute_metrics(np.arange(4.0), labels, 1.0)
    with pytest.raises(InputError):
        auroc(np.arange(4.0), labels)


def test_bad_arrays_are_input_errors() -> None:
    with pytest.raises(InputError, match="equal length"):
        auroc(np.arange(3.0), NORMAL_FIRST)
    with pytest.raises(InputError, match="NaN"):
        auroc(np.array([0.1, np.nan, 0.3, 0.4]), NORMAL_FIRST)
    with pytest.raises(InputError, match="0/1"):
        auroc(np.arange(4.0), np.array([0, 2, 1, 0]))
