"""Acceptance on the real faces set: import with labels, build a dataset, train briefly from
scratch, evaluate, promote, score. The split never puts a group (or a duplicate image) on both
sides, and training beats chance on validation."""
import csv
import gzip
import json
import math
import shutil

import pytest
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()
pytestmark = pytest.mark.shared
PER_CLASS = 400  # of ~2,000 per class: keeps the test to a few minutes on 2 CPU cores


def ok_json(*args):
    r = runner.invoke(app, [str(a) for a in args] + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout.strip().splitlines()[-1])


def _subsample(shared_data, tmp_path):
    labeled, unlabeled = tmp_path / "labeled", tmp_path / "unlabeled"
    for label in ("mask", "no_mask"):
        files = sorted((shared_data / "faces" / label).iterdir())
        picked = files[:: max(1, len(files) // PER_CLASS)][:PER_CLASS]  # spread over the set
        rest = sorted(set(files) - set(picked))[:30]
        for dest, group in ((labeled / label, picked), (unlabeled / label, rest)):
            dest.mkdir(parents=True)
            for f in group:
                shutil.copy(f, dest / f.name)
    return labeled, unlabeled


def _binomial_p_value(k, n, p=0.5):
    """P(X >= k) for X ~ Binomial(n, p): how likely a coin does at least this well."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def test_faces_loop(shared_data, tmp_path):
    ws = tmp_path / "ws"
    labeled, unlabeled = _subsample(shared_data, tmp_path)
    assert runner.invoke(app, ["init", "--project", str(ws)]).exit_code == 0
    assert ok_json("import-folder", labeled, "--labeled", "--project", ws)["added"] == 2 * PER_CLASS
    ok_json("import-folder", unlabeled, "--project", ws)

    built = ok_json("build-dataset", "--val-fraction", "0.25", "--project", ws)
    with gzip.open(ws / "datasets" / built["name"] / "manifest.csv.gz", "rt", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * PER_CLASS
    side = {}
    for r in rows:
        side.setdefault(r["group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in side.values()), "a group sits on both sides"
    # Duplicate pictures (the faces set holds byte-identical copies) never straddle the split.
    by_hash = {}
    for r in rows:
        by_hash.setdefault(r["sha256"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_hash.values())
    assert built["groups"] < len(rows)  # duplicates and near-duplicates were joined
    for label in ("mask", "no_mask"):
        assert 0.15 < built["counts"]["val"][label] / PER_CLASS < 0.35  # stratified

    trained = ok_json("train", "--epochs", "3", "--batch-size", "32", "--lr", "1e-3", "--init", "none",
                      "--project", ws)
    val = trained["val"]
    n_val = val["n"]
    correct = round(val["accuracy"] * n_val)
    assert val["balanced_accuracy"] > 0.6, trained["history"]
    assert _binomial_p_value(correct, n_val) < 1e-3  # beats a coin on validation, not by luck

    ev = ok_json("evaluate", "--model", trained["version"], "--plots", tmp_path / "plots", "--project", ws)
    assert ev["balanced_accuracy"] == pytest.approx(val["balanced_accuracy"], abs=1e-6)
    assert {"accuracy", "per_class", "confusion", "roc_auc", "ece"} <= ev.keys()
    # Balanced accuracy is the mean of the per-class recalls, each read off the confusion rows.
    recalls = [ev["per_class"][c]["recall"] for c in ev["classes"]]
    assert ev["classes"] == ["mask", "no_mask"] and sum(recalls) / 2 == pytest.approx(ev["balanced_accuracy"], abs=1e-6)
    cm = ev["confusion"]  # rows = true, columns = predicted, in classes order
    assert recalls == pytest.approx([cm[i][i] / sum(cm[i]) for i in range(2)], abs=1e-6)
    assert len(list((tmp_path / "plots").iterdir())) == 3

    promoted = ok_json("models", "promote", trained["version"], "--project", ws)
    # Promotion scores the 60 unlabeled crops first, then points their priorities at the model.
    assert promoted["promoted"] and promoted["scored"] == 60 and promoted["priorities_set"] == 60
    scored = ok_json("score", "--project", ws)
    assert scored["scored"] == 0
