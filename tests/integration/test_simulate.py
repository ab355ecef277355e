"""A tiny active-learning simulation on the real faces: files, table and resumption."""
import csv
import json

from typer.testing import CliRunner

from pipelines.cli import app
from pipelines import simulate


def split_faces(faces, root, *, pool_n=150, eval_n=60):
    """Disjoint pool and eval ImageFolders of real faces, as symlinks."""
    for label in ("mask", "no_mask"):
        files = sorted((faces / label).glob("*.jpg"))
        for name, chunk in (("pool", files[:pool_n]), ("eval", files[-eval_n:])):
            (root / name / label).mkdir(parents=True, exist_ok=True)
            for f in chunk:
                (root / name / label / f.name).symlink_to(f)
    return root / "pool", root / "eval"


def test_tiny_simulation(tmp_path, shared_data):
    pool, ev = split_faces(shared_data / "faces", tmp_path)
    out = tmp_path / "sim"
    args = ["simulate", "--pool", pool, "--eval", ev, "--out", out, "--strategies", "random,hybrid",
            "--rounds", "2", "--repeats", "1", "--seed-size", "40", "--batch", "30", "--epochs", "1",
            "--min-steps", "3",
            "--full-epochs", "2", "--json"]
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert [s["strategy"] for s in report["summary"]] == ["random", "hybrid"]
    assert report["summary"][1]["auc_vs_random"] is not None
    rows = list(csv.DictReader(open(out / "curves.csv")))
    # The ceiling is the cached full-pool model's figure (two epochs here: not a good model,
    # only a known one), and the summary's "labels to 95%" is read against it from the curves.
    full = report["full_pool_balanced_accuracy"]
    assert full == json.loads((out / "runs" / "full_pool.json").read_text())["balanced_accuracy"]
    for s in report["summary"]:
        labels, score = simulate.mean_curve(rows, s["strategy"])
        assert s["labels_to_95"] == simulate.labels_to_reach(labels, score, 0.95 * full)
    assert len(rows) == 2 * 3  # 2 strategies x rounds 0..2
    assert [int(r["labels"]) for r in rows if r["strategy"] == "hybrid"] == [40, 70, 100]
    assert set(rows[0]) == set(simulate.CURVE_FIELDS)
    # Strategies of one repeat share the seed set and the starting weights: a fair start.
    start = {r["strategy"]: r["balanced_accuracy"] for r in rows if r["round"] == "0"}
    assert start["random"] == start["hybrid"]
    assert (out / "curves.png").stat().st_size > 10_000
    # Resuming with the same settings redoes nothing and gives the same curves; without --json
    # the same summary comes as a table, random first as the reference.
    before = (out / "curves.csv").read_text()
    r = CliRunner().invoke(app, [str(a) for a in args[:-1]])
    assert r.exit_code == 0 and (out / "curves.csv").read_text() == before
    cells = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("│")]
    assert [c for c in cells if c != "│"] == ["random", "hybrid"]  # "│": a wrapped cell's 2nd line
    assert "ahead" in r.stdout and str(out / "curves.png") in r.stdout
    # Parallel repeats train exactly as serial ones: results do not depend on --jobs.
    i = args.index("--out") + 1
    r = CliRunner().invoke(app, [str(a) for a in args[:i] + [tmp_path / "sim2"] + args[i + 1:]] + ["--jobs", "2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "sim2" / "curves.csv").read_text() == before
    # Other settings on the same OUT are refused in one line.
    r = CliRunner().invoke(app, [str(a) for a in args[:-1]] + ["--batch", "10"])
    assert r.exit_code != 0 and "other settings" in r.output


def test_summaries_are_pure_and_correct():
    rows = [{"strategy": s, "repeat": k, "round": i, "labels": 100 * (i + 1),
             "balanced_accuracy": acc} for s, accs in
            (("random", [0.5, 0.6, 0.7]), ("hybrid", [0.5, 0.7, 0.8])) for k in (0, 1)
            for i, acc in enumerate(accs)]
    summary = {s.strategy: s for s in simulate.summarize(rows, full_pool=0.8)}
    assert summary["random"].labels_to_95 is None  # 0.7 < 0.76
    assert summary["hybrid"].labels_to_95 == 300 and summary["hybrid"].labels_to_98 == 300
    assert summary["hybrid"].auc_vs_random > 0
    # Random's final 0.7 is reached by hybrid at 200 labels: a third of the labels saved.
    assert summary["random"].labels_to_random_final == 300
    assert summary["hybrid"].labels_to_random_final == 200
    assert summary["hybrid"].repeats_ahead_of_random == 2 and summary["hybrid"].repeats == 2
    assert summary["random"].repeats_ahead_of_random is None
