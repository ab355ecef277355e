"""Queue semantics on a real workspace (SQLite and PostgreSQL): leases, labels, undo, relabel."""
import datetime as dt

import pytest

from annotator.data import crop_queue, reports
from annotator.service.auth import add_user, authenticate
from annotator.data.db import Crop, Label, get_or_create_source, utcnow
from annotator.core.errors import AuthError, QueueError, WorkspaceError

pytestmark = pytest.mark.backends


def add_fake_crops(ws, n, *, source_key="video:1", track_of=lambda i: None):
    with ws.session() as s:
        src = get_or_create_source(s, key=source_key, kind="video", uri="x.mp4", name="x.mp4")
        crops = [
            crop_queue.NewCrop(origin=f"f{i:06d}:0,0,10,10", sha256=f"{i:064x}", path=f"00/{i}.png",
                          width=10, height=10, frame_index=i, track_id=track_of(i))
            for i in range(n)
        ]
        return crop_queue.add_crops(s, src.id, crops)


def users(ws, *names):
    with ws.session() as s:
        return [add_user(s, n, "secret-password", role="annotator").id for n in names]


def test_add_crops_is_idempotent(workspace):
    first = add_fake_crops(workspace, 5)
    again = add_fake_crops(workspace, 5)
    assert len(first) == 5 and again == []


def test_a_signed_stream_url_longer_than_its_column_is_stored_and_found_again(workspace):
    # PostgreSQL refuses a VARCHAR(300) overflow that SQLite would have stored silently.
    url = "https://cdn.example/live/cam1.m3u8?" + "&".join(f"p{i}={'x' * 20}" for i in range(20))
    assert len(url) > 400
    with workspace.session() as s:
        first = get_or_create_source(s, key=url, kind="stream", uri=url, name=url)
        assert len(first.key) <= 300 and len(first.name) <= 300 and first.uri == url
        first_id = first.id
    with workspace.session() as s:
        assert get_or_create_source(s, key=url, kind="stream", uri=url, name=url).id == first_id
        other = get_or_create_source(s, key=url + "1", kind="stream", uri=url + "1", name=url)
        assert other.id != first_id


def test_two_annotators_never_hold_the_same_crop(workspace):
    add_fake_crops(workspace, 10)
    a, b = users(workspace, "ann", "bob")
    with workspace.session() as s:
        ca = {c.crop_id for c in crop_queue.claim_batch(s, a, 6)}
    with workspace.session() as s:
        cb = {c.crop_id for c in crop_queue.claim_batch(s, b, 6)}
    assert len(ca) == 6 and len(cb) == 4 and not ca & cb
    # Claiming again returns what the annotator already holds, not new crops.
    with workspace.session() as s:
        assert {c.crop_id for c in crop_queue.claim_batch(s, a, 6)} == ca


def test_expired_lease_comes_back(workspace):
    add_fake_crops(workspace, 3)
    a, b = users(workspace, "ann", "bob")
    t0 = utcnow()
    with workspace.session() as s:
        held = {c.crop_id for c in crop_queue.claim_batch(s, a, 3, lease_seconds=60, now=t0)}
    with workspace.session() as s:
        assert crop_queue.claim_batch(s, b, 3, now=t0 + dt.timedelta(seconds=30)) == []
    with workspace.session() as s:
        later = {c.crop_id for c in crop_queue.claim_batch(s, b, 3, now=t0 + dt.timedelta(seconds=61))}
    assert later == held


def test_label_rules_and_history(workspace):
    (cid,) = add_fake_crops(workspace, 1)
    a, b = users(workspace, "ann", "bob")
    allowed = workspace.config.label_values
    with workspace.session() as s:
        crop_queue.claim_batch(s, a, 1)
    with workspace.session() as s, pytest.raises(QueueError, match="held by another"):
        crop_queue.submit_label(s, b, cid, "mask", allowed=allowed)
    with workspace.session() as s:
        crop_queue.submit_label(s, a, cid, "mask", allowed=allowed, seconds=1.5)
    with workspace.session() as s, pytest.raises(QueueError, match="already labeled"):
        crop_queue.submit_label(s, b, cid, "no_mask", allowed=allowed)
    with workspace.session() as s, pytest.raises(Exception, match="unknown label"):
        crop_queue.submit_label(s, a, cid, "banana", allowed=allowed)
    # Undo brings the crop back to the same annotator, at the front of their batch.
    with workspace.session() as s:
        assert crop_queue.undo_last(s, a) == [cid]
        assert s.get(Crop, cid).status == "unlabeled"
    with workspace.session() as s:
        assert [c.crop_id for c in crop_queue.claim_batch(s, a, 5)] == [cid]
        crop_queue.submit_label(s, a, cid, "no_mask", allowed=allowed)
    # A deliberate relabel supersedes, and keeps the history.
    with workspace.session() as s:
        new = crop_queue.relabel(s, b, cid, "mask", allowed=allowed)
    with workspace.session() as s:
        rows = s.query(Label).filter(Label.crop_id == cid).order_by(Label.id).all()
        assert [r.value for r in rows] == ["mask", "no_mask", "mask"]
        assert rows[0].undone_at is not None and rows[1].superseded_by_id == new
        assert all(r.seconds is None or r.seconds > 0 for r in rows)
        st = reports.stats(s, workspace.config.labels)
    assert st["labels"] == {"mask": 1, "no_mask": 0}
    assert st["crops"]["labeled"] == 1


def test_skip_and_not_a_face_leave_the_queue(workspace):
    c1, c2, c3 = add_fake_crops(workspace, 3)
    (a,) = users(workspace, "ann")
    allowed = workspace.config.label_values
    with workspace.session() as s:
        crop_queue.claim_batch(s, a, 3)
        crop_queue.submit_label(s, a, c1, "skip", allowed=allowed)
        crop_queue.submit_label(s, a, c2, "not_a_face", allowed=allowed)
    with workspace.session() as s:
        st = reports.stats(s, workspace.config.labels)
        assert [c.crop_id for c in crop_queue.claim_batch(s, a, 3)] == [c3]
    assert st["crops"] == {"total": 3, "labeled": 0, "unlabeled": 1, "skipped": 1, "not_a_face": 1}


def test_double_annotation_goes_to_a_second_annotator(workspace):
    (cid,) = add_fake_crops(workspace, 1)
    a, b = users(workspace, "ann", "bob")
    allowed = workspace.config.label_values
    with workspace.session() as s:
        s.get(Crop, cid).votes_needed = 2
    with workspace.session() as s:
        crop_queue.claim_batch(s, a, 1)
        crop_queue.submit_label(s, a, cid, "mask", allowed=allowed)
    with workspace.session() as s:
        assert crop_queue.claim_batch(s, a, 1) == []  # never twice to the same person
        assert [c.crop_id for c in crop_queue.claim_batch(s, b, 1)] == [cid]
        crop_queue.submit_label(s, b, cid, "no_mask", allowed=allowed)
    with workspace.session() as s:
        assert s.get(Crop, cid).status == "labeled"
        # A tie is no training label.
        assert reports.current_labels(s, workspace.config.labels).empty


def test_authentication(workspace):
    users(workspace, "ann")
    with workspace.session() as s:
        assert authenticate(s, "ann", "secret-password").name == "ann"
        with pytest.raises(AuthError):
            authenticate(s, "ann", "wrong")
        with pytest.raises(AuthError):
            authenticate(s, "nobody", "secret-password")


def test_newer_database_is_refused(workspace):
    from annotator.service.workspace import Workspace

    with workspace.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffffffffffff'")
    workspace.dispose()
    with pytest.raises(WorkspaceError, match="newer version"):
        Workspace.open(workspace.root, db_url=workspace.db_url)
