"""The labeling-cost simulator on the real faces (tiny): rows, counts, curves, the CLI table."""
import csv
import json

from typer.testing import CliRunner

from pipelines import simulate_policies
from pipelines.common.simulation import SimulateOptions
from pipelines.cli import app
from tests.integration.test_simulate import split_faces


def test_keys_and_auto_policies_count_human_decisions_and_measure_auto_error(tmp_path,
                                                                            shared_data):
    pool, ev = split_faces(shared_data / "faces", tmp_path, pool_n=150, eval_n=40)
    opts = SimulateOptions(pool=pool, eval=ev, out=tmp_path / "sim", seed_size=40,
                           batch=40, rounds=3, repeats=1, epochs=2, min_steps=20)
    # A loose bound and half of each batch as the audit, so that a tiny run labels something.
    rep = simulate_policies.run(opts, ("keys", "auto"),
                                simulate_policies.PolicyOptions(max_error=0.3, audit_share=0.5))
    rows = list(csv.DictReader(open(tmp_path / "sim" / "policies" / "curves.csv")))
    assert set(rows[0]) == set(simulate_policies.FIELDS) and len(rows) == 2 * 4
    keys = [r for r in rows if r["policy"] == "keys"]
    auto = [r for r in rows if r["policy"] == "auto"]
    # Every crop keys labels is a person's decision; auto's people label as many per round.
    assert [int(r["human_decisions"]) for r in keys] == [40, 80, 120, 160]
    assert [int(r["human_decisions"]) for r in auto] == [40, 80, 120, 160]
    assert all(int(r["labeled_auto"]) == 0 for r in keys)
    assert int(auto[-1]["labeled_auto"]) > 0  # the audit let the model label crops
    last = auto[-1]
    share = (int(last["labeled_human"]) + int(last["labeled_auto"])) / 300
    assert float(last["labeled_share"]) == round(share, 4)
    lo, err, hi = (float(last[k]) for k in ("auto_error_lo", "auto_error", "auto_error_hi"))
    assert lo <= err <= hi and float(last["believed_bound"]) <= 0.3
    s = {x.policy: x for x in rep.summary}
    assert s["auto"].labeled_share > s["keys"].labeled_share
    assert s["auto"].keys_at_same_decisions == s["keys"].balanced_accuracy  # same decisions
    assert (tmp_path / "sim" / "policies" / "curves.png").stat().st_size > 10_000


def test_the_cli_prints_the_policy_table_and_refuses_unknown_policies(tmp_path, shared_data):
    pool, ev = split_faces(shared_data / "faces", tmp_path, pool_n=60, eval_n=20)
    base = ["simulate", "--pool", pool, "--eval", ev, "--out", tmp_path / "sim", "--rounds", "1",
            "--repeats", "1", "--seed-size", "20", "--batch", "20", "--epochs", "1",
            "--min-steps", "3"]
    r = CliRunner().invoke(app, [str(a) for a in base + ["--policies", "keys,robots"]])
    assert r.exit_code != 0 and "unknown policy robots" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, [str(a) for a in base + ["--policies", "keys,auto", "--json"]])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert [x["policy"] for x in rep["summary"]] == ["keys", "auto"]
    # --max-error 0.01 with 2 audited crops a round: auto refuses, so it labels nothing.
    assert rep["summary"][1]["auto_labels"] == 0 and rep["summary"][1]["auto_error"] is None
    r = CliRunner().invoke(app, [str(a) for a in base + ["--policies", "keys,auto"]])
    assert r.exit_code == 0 and "labeling cost on 120 crops" in r.stdout and "curves.png" in r.stdout
