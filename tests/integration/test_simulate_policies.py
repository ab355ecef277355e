"""The labeling-cost simulator (tiny): rows, counts, curves, the CLI table."""
import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pipelines import simulate_policies
from pipelines.common.simulation import SimulateOptions
from pipelines.cli import app
from tests.integration.test_simulate import split_faces


def drawn_faces(root: Path, n: int, seed: int) -> Path:
    """An ImageFolder of made-in-code 45x45 "faces" a tiny model learns in a few steps: a skin
    oval on a noisy background; ``mask`` adds a light-blue lower half."""
    import cv2

    rng = np.random.default_rng(seed)
    for label in ("mask", "no_mask"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(40, 120, (45, 45, 3)).astype(np.uint8)
            c = (22 + int(rng.integers(-3, 4)), 22 + int(rng.integers(-3, 4)))
            skin = tuple(int(v) for v in rng.integers((60, 110, 160), (140, 170, 230)))
            cv2.ellipse(img, c, (13, 17), 0, 0, 360, skin, -1)
            if label == "mask":
                blue = tuple(int(v) for v in rng.integers((200, 170, 120), (255, 220, 170)))
                cv2.ellipse(img, (c[0], c[1] + 6), (13, 10), 0, 0, 180, blue, -1)
            img = np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / label / f"{label}_{i:04d}.png"), img)
    return root


def test_keys_and_auto_policies_count_human_decisions_and_measure_auto_error(tmp_path):
    # Faces a 2-epoch model can learn: on 150 real faces per class it stays near chance
    # (balanced accuracy 0.44-0.72 over seeds), so whether the audit let it label anything was
    # a coin toss that one machine's float rounding lost.
    pool, ev = drawn_faces(tmp_path / "pool", 150, 1), drawn_faces(tmp_path / "eval", 40, 2)
    opts = SimulateOptions(pool=pool, eval=ev, out=tmp_path / "sim", seed_size=40,
                           batch=40, rounds=3, repeats=1, epochs=2, min_steps=20)
    # A loose bound and half of each batch as the audit, so that a tiny run labels something.
    rep = simulate_policies.run(opts, ("keys", "auto"),
                                simulate_policies.PolicyOptions(max_error=0.3, audit_share=0.5))
    rows = list(csv.DictReader(open(tmp_path / "sim" / "policies" / "curves.csv")))
    assert set(rows[0]) == set(simulate_policies.FIELDS)
    keys = [r for r in rows if r["policy"] == "keys"]
    auto = [r for r in rows if r["policy"] == "auto"]
    # Every crop keys labels is a person's decision; auto's people label as many per round,
    # until the model has labeled the rest of the pool (the run then ends early).
    assert [int(r["human_decisions"]) for r in keys] == [40, 80, 120, 160]
    assert 2 <= len(auto) <= 4
    assert [int(r["human_decisions"]) for r in auto] == [40, 80, 120, 160][:len(auto)]
    assert all(int(r["labeled_auto"]) == 0 for r in keys)
    assert int(auto[0]["labeled_auto"]) == 0  # no audit before the first batch
    last = auto[-1]
    assert int(last["labeled_auto"]) > 0  # the audit let the model label crops
    share = (int(last["labeled_human"]) + int(last["labeled_auto"])) / 300
    assert float(last["labeled_share"]) == round(share, 4)
    assert float(last["labeled_share"]) > float(keys[-1]["labeled_share"])
    lo, err, hi = (float(last[k]) for k in ("auto_error_lo", "auto_error", "auto_error_hi"))
    assert lo <= err <= hi and err <= 0.3 and float(last["believed_bound"]) <= 0.3
    s = {x.policy: x for x in rep.summary}
    assert s["auto"].labeled_share > s["keys"].labeled_share
    assert s["auto"].human_decisions == int(last["human_decisions"])
    same = [r for r in keys if r["human_decisions"] == last["human_decisions"]]
    assert s["auto"].keys_at_same_decisions == float(same[0]["balanced_accuracy"])
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
