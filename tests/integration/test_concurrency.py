"""Several real processes on one queue (SQLite and PostgreSQL): no crop claimed or labeled twice,
no lost labels, no lock errors or lost races left to the caller."""
import datetime as dt
import multiprocessing as mp
import os
import signal
import time

import pytest

from annotator.data import crop_queue
from annotator.service.auth import add_user
from annotator.data.db import Label, utcnow
from annotator.service.workspace import Workspace
from tests.integration.test_queue import add_fake_crops

pytestmark = pytest.mark.backends
WORKERS = 4
QUOTA = 60  # crops each worker labels: 240 of the 400 queued


def _label_worker(root, db_url, name, ready, go, results):
    ws = Workspace.open(root, db_url=db_url)
    with ws.read_session() as s:
        from annotator.data.db import get_annotator

        me = get_annotator(s, name).id
    ready.put(name)
    go.wait(120)  # spawned processes import for seconds: all start labeling together
    done, claimed, errors = [], [], []
    deadline = time.monotonic() + 120  # a guard only: the loop ends at the worker's quota
    while len(done) < QUOTA and time.monotonic() < deadline:
        try:
            with ws.session() as s:
                batch = crop_queue.claim_batch(s, me, min(5, QUOTA - len(done)), lease_seconds=600)
            if not batch:  # the workers label fewer crops than there are: never empty
                errors.append(f"{name}: the queue gave nothing with crops left")
                break
            claimed += [c.crop_id for c in batch]
            for c in batch:
                with ws.session() as s:
                    crop_queue.submit_label(s, me, c.crop_id, "mask" if c.crop_id % 2 else "no_mask",
                                       allowed=ws.config.label_values, seconds=0.01)
                done.append(c.crop_id)
        except Exception as exc:  # anything here is a failure of the queue
            errors.append(f"{type(exc).__name__}: {exc}")
            break
    results.put((name, done, claimed, errors))


def test_four_processes_label_without_conflicts(workspace):
    # Each worker labels a fixed quota of a larger queue, rather than for fixed seconds or until
    # the queue is empty: on a loaded 2-core machine either measured the scheduler (a worker
    # woken late found the queue drained), not the queue.
    crops = 400
    add_fake_crops(workspace, crops)
    names = [f"worker{i}" for i in range(WORKERS)]
    with workspace.session() as s:
        for n in names:
            add_user(s, n, "secret-password")
    ctx = mp.get_context("spawn")
    ready, go, results = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_label_worker, args=(str(workspace.root), workspace.db_url, n, ready, go, results))
             for n in names]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
    errors = [e for *_, errs in outcomes for e in errs]
    assert errors == []
    labeled = [cid for _, done, _, _ in outcomes for cid in done]
    assert [len(done) for _, done, _, _ in outcomes] == [QUOTA] * WORKERS
    # Leases last 10 minutes: a crop in two workers' batches was claimed twice.
    claimed = [cid for _, _, got, _ in outcomes for cid in set(got)]
    assert len(claimed) == len(set(claimed)), "a crop was claimed twice"
    assert len(labeled) == len(set(labeled)), "a crop was labeled twice"
    with workspace.read_session() as s:
        rows = s.query(Label.crop_id).all()
    assert sorted(r.crop_id for r in rows) == sorted(labeled), "a label was lost"


def _hold_and_hang(root, db_url, name, ready, at):
    import threading

    ws = Workspace.open(root, db_url=db_url)
    with ws.read_session() as s:
        from annotator.data.db import get_annotator

        me = get_annotator(s, name).id
    with ws.session() as s:
        ids = [c.crop_id for c in crop_queue.claim_batch(s, me, 5, lease_seconds=3, now=at)]
    ready.put(ids)
    threading.Event().wait()  # killed mid-batch, lease still held


def test_killed_annotator_gives_crops_back_after_lease(workspace):
    add_fake_crops(workspace, 5)
    with workspace.session() as s:
        add_user(s, "crash", "secret-password")
        other = add_user(s, "other", "secret-password").id
    # The lease's clock is given, not waited for: claimed at t0 for 3 s.
    t0 = utcnow()
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=_hold_and_hang,
                       args=(str(workspace.root), workspace.db_url, "crash", ready, t0))
    proc.start()
    held = ready.get(timeout=60)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert len(held) == 5
    with workspace.session() as s:  # 2.9 s later: still leased to the dead process
        assert crop_queue.claim_batch(s, other, 5, now=t0 + dt.timedelta(seconds=2.9)) == []
    with workspace.session() as s:  # 3.1 s later: the lease ran out, the crops come back
        back = {c.crop_id for c in crop_queue.claim_batch(
            s, other, 5, now=t0 + dt.timedelta(seconds=3.1))}
    assert back == set(held)
