"""The simulator runs the targeted strategy and reports per-slice curves (tiny run)."""
import csv
import json

import pytest
from typer.testing import CliRunner

from bench.slice_sampling import build_folders
from pipelines.cli import app

pytestmark = pytest.mark.shared


def test_simulate_hybrid_and_slices_with_slice_curves(tmp_path, shared_data):
    pool, ev = build_folders(shared_data, tmp_path / "data", per_class=90, eval_per_class=45)
    out = tmp_path / "sim"
    args = ["simulate", "--pool", pool, "--eval", ev, "--out", out, "--strategies", "hybrid,slices",
            "--rounds", "2", "--repeats", "1", "--seed-size", "40", "--batch", "30", "--epochs", "1",
            "--min-steps", "3", "--full-epochs", "1", "--slice-share", "0.6"]
    r = CliRunner().invoke(app, [str(a) for a in args] + ["--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [s["strategy"] for s in report["summary"]] == ["hybrid", "slices"]
    rows = list(csv.DictReader(open(out / "slice_curves.csv")))
    dark = [x for x in rows if (x["attribute"], x["band"]) == ("light", "dark")]
    # 15 of 45 per class in EVAL were darkened: the slice is measured every round, both strategies.
    assert {int(x["n"]) for x in dark} == {30}
    assert sorted((x["strategy"], int(x["labels"])) for x in dark) == [
        ("hybrid", 40), ("hybrid", 70), ("hybrid", 100), ("slices", 40), ("slices", 70),
        ("slices", 100)]
    by = {(s["strategy"], s["attribute"], s["band"]) for s in report["slices"]}
    assert {("hybrid", "light", "dark"), ("slices", "light", "dark")} <= by
    assert (out / "slice_curves.png").stat().st_size > 5_000
    # The human summary names the worst slices and where the per-round curves are.
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0 and "worst slices of EVAL" in r.stdout
