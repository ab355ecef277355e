"""A retrain as the Models page runs it (a background job), on the 4,065 real face crops: its
progress moves inside an epoch; a whole retrain adds < 5% of the crops' bytes to the workspace
(``du``: its dataset version links the stored crops instead of copying them, its manifest is
gzipped, its model file is half precision); a cancelled retrain adds nothing."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from annotator.data import db
from annotator.service import jobs
from annotator.service.workspace import Workspace
from pipelines import build_dataset, import_folder, retrain
from pipelines.cli import runner

N_FACES = 4065  # all of shared/data/faces


def du(path: Path) -> int:
    """Bytes on disk, each hard-linked file counted once (what `du` says)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], check=True,
                         capture_output=True, text=True).stdout
    return int(out.split()[0])


@pytest.fixture(scope="module")
def faces_ws(tmp_path_factory, shared_data):
    tmp = tmp_path_factory.mktemp("retrain_ux")
    folder = tmp / "faces"
    for label in ("mask", "no_mask"):  # real crops, as JPEG files: symlinks to shared/
        (folder / label).mkdir(parents=True)
        for f in sorted((shared_data / "faces" / label).glob("*.jpg")):
            (folder / label / f.name).symlink_to(f)
    ws = Workspace.init(tmp / "ws")
    import_folder.run(ws, import_folder.ImportOptions(folder=folder, labeled=True))
    yield ws
    ws.dispose()


def _run_and_watch(ws, opts, *, until=None, timeout=600):
    """Start a retrain job as the page does; sample its row until it ends (or ``until(row)``
    says stop, then cancel it). Returns (final job, [(progress, message), ...])."""
    job_id = runner.submit(ws, "retrain", opts, started_by="test")
    seen, end = [], time.monotonic() + timeout
    while True:
        job = jobs.get(ws, job_id)
        if job.active and job.message and (not seen or seen[-1] != (job.progress, job.message)):
            seen.append((job.progress, job.message))
        if not job.active:
            return job, seen
        if until is not None and until(job):
            jobs.cancel(ws, job_id)
            return jobs.wait(ws, job_id, timeout=120), seen
        assert time.monotonic() < end, (job.status, job.message)
        time.sleep(0.1)


def test_progress_moves_inside_the_one_epoch(faces_ws):
    ws = faces_ws
    first, seen = _run_and_watch(ws, retrain.RetrainOptions(epochs=1, init="none", force=True))
    assert first.status == "done", (first.message, jobs.log_tail(first))
    inside = [(p, m) for p, m in seen if "epoch 1/1 · batch" in m]
    assert len({p for p, _ in inside}) >= 2, seen  # it moved while the only epoch ran
    assert all(p < 1.0 for p, _ in inside)
    assert not any(m.startswith("dataset") for p, m in seen if p > inside[0][0]), seen
    assert first.result["train"]["n_train"] + first.result["train"]["n_val"] == N_FACES


def test_a_retrain_adds_less_than_a_twentieth_of_the_crops_bytes(faces_ws):
    """Everything a second retrain writes anywhere in the workspace (dataset version, model
    version, database rows, job log), by `du`, against the stored crops' bytes. The model file
    is a fixed ~0.6 MB: on these 26 MB of crops that is 2.3%."""
    ws = faces_ws
    crops = du(ws.crops_dir)
    build_dataset.run(ws, build_dataset.BuildOptions())  # the tensor cache, filled once
    before = du(ws.root)
    job, _ = _run_and_watch(ws, retrain.RetrainOptions(epochs=1, init="none", force=True))
    assert job.status == "done", (job.message, jobs.log_tail(job))
    added = du(ws.root) - before
    print(f"\nretrain adds {added} B = {added / crops:.2%} of the crops' {crops} B")
    assert added < 0.05 * crops, (added, crops)
    dataset = ws.datasets_dir / job.result["dataset"]["name"]
    linked = list(dataset.rglob("*.jpg"))  # links to the stored crops, not copies
    assert len(linked) == N_FACES and all(p.stat().st_nlink >= 2 for p in linked)
    model = ws.models_dir / job.result["train"]["version"] / "model.pt"
    assert model.stat().st_size < 700_000  # half precision: 296K weights in 0.6 MB


def test_a_cancelled_retrain_leaves_nothing(faces_ws):
    ws = faces_ws
    with ws.read_session() as s:
        datasets = [d.name for d in db.list_datasets(s)]
    before = {p.name for p in ws.datasets_dir.iterdir()}, {p.name for p in ws.models_dir.iterdir()}
    size = du(ws.datasets_dir) + du(ws.models_dir)
    job, _ = _run_and_watch(ws, retrain.RetrainOptions(epochs=50, init="none", force=True),
                            until=lambda j: "epoch" in (j.message or ""))
    assert job.status == "cancelled", job.message
    with ws.read_session() as s:
        assert [d.name for d in db.list_datasets(s)] == datasets  # no dataset row
    after = {p.name for p in ws.datasets_dir.iterdir()}, {p.name for p in ws.models_dir.iterdir()}
    assert after == before and du(ws.datasets_dir) + du(ws.models_dir) == size
