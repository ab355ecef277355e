"""Metrics against scikit-learn and hand-computed values."""
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from annotator.core import metrics as M


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    logits = rng.normal(size=(500, 3)) + 1.5 * np.eye(3)[y]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, p


def test_matches_sklearn_multiclass(data):
    y, p = data
    pred = p.argmax(1)
    assert M.accuracy(y, pred) == pytest.approx(skm.accuracy_score(y, pred))
    assert M.balanced_accuracy(y, pred) == pytest.approx(skm.balanced_accuracy_score(y, pred))
    np.testing.assert_array_equal(M.confusion_matrix(y, pred, 3), skm.confusion_matrix(y, pred))
    pc = M.per_class(y, pred, 3)
    pr, rc, f1, sup = skm.precision_recall_fscore_support(y, pred)
    np.testing.assert_allclose(pc["precision"], pr)
    np.testing.assert_allclose(pc["recall"], rc)
    np.testing.assert_allclose(pc["f1"], f1)
    np.testing.assert_array_equal(pc["support"], sup)
    assert M.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, p, multi_class="ovr", average="macro"))


def test_binary_auc_with_ties_matches_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.5 + 0.3 * y, 1)  # many ties
    p = np.stack([1 - s, s], 1)
    assert M.roc_auc(y, p) == pytest.approx(skm.roc_auc_score(y, s))
    assert np.isnan(M.roc_auc(np.zeros(4, int), np.full((4, 2), 0.5)))


def test_ece_by_hand():
    # Two bins used: conf 0.9 (2 of 2 right) and conf 0.6 (1 of 2 right), 15 bins.
    p = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 0])
    expected = 0.5 * abs(1.0 - 0.9) + 0.5 * abs(0.5 - 0.6)
    assert M.expected_calibration_error(y, p) == pytest.approx(expected)
    perfect = np.eye(2)[[0, 1, 1]]
    assert M.expected_calibration_error(np.array([0, 1, 1]), perfect) == pytest.approx(0.0)


def test_balanced_accuracy_ignores_absent_classes():
    assert M.balanced_accuracy([0, 0, 0, 0], [0, 0, 1, 1], 2) == pytest.approx(0.5)


def test_report_is_json_ready_with_the_cli_keys(data, tmp_path):
    y, p = data
    rep = M.report(y, p, ["mask", "no_mask", "other"])
    json.dumps(rep)
    assert {"accuracy", "balanced_accuracy", "per_class", "confusion", "roc_auc", "ece"} <= rep.keys()
    assert set(rep["per_class"]["mask"]) == {"precision", "recall", "f1", "support"}
    assert np.array(rep["confusion"]).sum() == 500
    one_class = M.report(np.zeros(3, int), np.tile([0.8, 0.2], (3, 1)), ["mask", "no_mask"])
    assert one_class["roc_auc"] is None  # NaN becomes null, not invalid JSON
    from annotator.media.plots import plot_report

    written = plot_report(y, p, ["a", "b", "c"], tmp_path / "plots")
    assert sorted(w.name for w in written) == ["confusion.png", "reliability.png", "roc.png"]
    assert all(w.stat().st_size > 1000 for w in written)


def test_input_validation():
    with pytest.raises(ValueError):
        M.report(np.array([0, 1]), np.ones((3, 2)) / 2, ["a", "b"])
    with pytest.raises(ValueError):
        M.report(np.array([0, 2]), np.ones((2, 2)) / 2, ["a", "b"])


def test_cohen_kappa_matches_the_textbook_example():
    # Two raters, 50 items: 20 yes/yes, 15 no/no, 5 yes/no, 10 no/yes -> kappa 0.4.
    a = ["y"] * 20 + ["n"] * 15 + ["y"] * 5 + ["n"] * 10
    b = ["y"] * 20 + ["n"] * 15 + ["n"] * 5 + ["y"] * 10
    assert M.cohen_kappa(a, b) == pytest.approx(0.4)
    assert M.cohen_kappa(["m", "m"], ["m", "m"]) == 1.0
    assert M.cohen_kappa(["m", "n"], ["n", "m"]) == pytest.approx(-1.0)
