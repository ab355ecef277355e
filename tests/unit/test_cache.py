"""The tensor cache on its own: round trips, torn writes, damaged records, forget, compaction."""
from __future__ import annotations

import hashlib
import os

import cv2
import numpy as np
import pytest

from annotator.media import images
from annotator.media.cache import ENTRY_SIZE, TensorCache


def sha(i: int) -> str:
    return hashlib.sha256(f"crop {i}".encode()).hexdigest()


def tensors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 45, 45, 3), dtype=np.uint8)


def files(tmp_path, x: np.ndarray) -> list:
    """PNG files whose decoded model input is ``x`` (already 45x45: no resize)."""
    out = []
    for i, t in enumerate(x):
        p = tmp_path / f"f{i}.png"
        cv2.imwrite(str(p), cv2.cvtColor(t, cv2.COLOR_RGB2BGR))
        out.append(p)
    return out


def test_put_get_round_trip_skips_duplicates_and_reports_misses(tmp_path):
    c = TensorCache(tmp_path)
    x = tensors(5)
    assert c.put([sha(i) for i in range(5)], x) == 5
    assert c.put([sha(0), sha(0), sha(9)], tensors(3, 1)) == 1  # sha 0 is kept, not replaced
    got, ok = c.get([sha(3), sha(7), sha(0)])
    assert ok.tolist() == [True, False, True]
    np.testing.assert_array_equal(got[0], x[3])
    np.testing.assert_array_equal(got[2], x[0])
    assert not got[1].any()
    other = TensorCache(tmp_path)  # a second process's view
    assert len(other) == 6 and sha(9) in other
    with pytest.raises(ValueError):
        c.put([sha(1)], np.zeros((1, 44, 45, 3), np.uint8))


def test_load_decodes_misses_once_and_fills(tmp_path):
    x = tensors(4)
    paths = files(tmp_path, x)
    c = TensorCache(tmp_path / "cache")
    items = [(sha(i), paths[i]) for i in range(4)] + [(sha(0), paths[0]), (sha(8), tmp_path / "nope.png")]
    got, ok = c.load(items)
    assert ok.tolist() == [True] * 5 + [False]
    np.testing.assert_array_equal(got[:4], x)
    assert (c.hits, c.filled, c.unreadable) == (0, 4, 1)
    fresh = TensorCache(tmp_path / "cache")
    got2, ok2 = fresh.load(items[:4])
    assert ok2.all() and fresh.hits == 4 and fresh.filled == 0
    np.testing.assert_array_equal(got2, x)
    assert np.array_equal(got2, images.load_images(paths))


def test_torn_index_tail_is_ignored_then_truncated(tmp_path):
    c = TensorCache(tmp_path)
    c.put([sha(0), sha(1)], tensors(2))
    index = next(c.dir.glob("index.*"))
    with open(index, "ab") as fh:  # what a writer killed mid-entry leaves
        fh.write(b"\x01" * (ENTRY_SIZE + ENTRY_SIZE // 2))
    reader = TensorCache(tmp_path)
    assert len(reader) == 2
    x2 = tensors(1, 5)
    assert c.put([sha(2)], x2) == 1
    assert os.path.getsize(index) == 3 * ENTRY_SIZE
    got, ok = reader.get([sha(2)])
    assert ok.all() and np.array_equal(got[0], x2[0])


def test_orphan_records_after_a_crash_are_overwritten(tmp_path):
    c = TensorCache(tmp_path)
    c.put([sha(0)], tensors(1))
    data = next(c.dir.glob("data.*"))
    with open(data, "ab") as fh:  # records written, index never appended
        fh.write(b"\xff" * (45 * 45 * 3 * 2 + 100))
    x = tensors(1, 3)
    TensorCache(tmp_path).put([sha(1)], x)
    assert os.path.getsize(data) == 2 * 45 * 45 * 3
    got, ok = TensorCache(tmp_path).get([sha(1)])
    assert ok.all() and np.array_equal(got[0], x[0])


def test_a_damaged_record_is_never_served_and_is_repaired(tmp_path):
    x = tensors(3)
    paths = files(tmp_path, x)
    c = TensorCache(tmp_path / "cache")
    c.load([(sha(i), paths[i]) for i in range(3)])
    data = next(c.dir.glob("data.*"))
    with open(data, "r+b") as fh:  # flip one byte of record 1
        fh.seek(45 * 45 * 3 + 77)
        b = fh.read(1)
        fh.seek(45 * 45 * 3 + 77)
        fh.write(bytes([b[0] ^ 0xFF]))
    r = TensorCache(tmp_path / "cache")
    got, ok = r.get([sha(0), sha(1), sha(2)])
    assert ok.tolist() == [True, False, True] and r.repaired == 1
    view = r.view([(sha(i), paths[i]) for i in range(3)])  # served from the file instead
    np.testing.assert_array_equal(view[1], x[1])
    got, ok = r.load([(sha(1), paths[1])])  # decoded again, re-added under a new slot
    assert ok.all() and np.array_equal(got[0], x[1])
    got, ok = TensorCache(tmp_path / "cache").get([sha(1)])
    assert ok.all() and np.array_equal(got[0], x[1])


def test_forget_then_compact_reclaims_space_and_keeps_only_what_is_asked(tmp_path):
    c = TensorCache(tmp_path)
    x = tensors(6)
    c.put([sha(i) for i in range(6)], x)
    reader = TensorCache(tmp_path)
    view = reader.view([(sha(i), "unused") for i in range(6)])
    assert c.forget([sha(1), sha(1), sha(42)]) == 1
    assert sha(1) not in reader and reader.get([sha(1)])[1].tolist() == [False]
    st = c.status()
    assert st["entries"] == 5 and st["dead_records"] == 1
    rep = c.compact(keep={sha(i) for i in (0, 2, 3, 4)})
    assert (rep["kept"], rep["dropped_unused"], rep["dropped_damaged"]) == (4, 1, 0)
    assert rep["reclaimed_bytes"] >= 2 * 45 * 45 * 3
    assert c.status()["generation"] == 2 and len(list(c.dir.glob("data.*"))) == 1
    got, ok = reader.get([sha(i) for i in range(6)])  # the old reader moves to generation 2
    assert ok.tolist() == [True, False, True, True, True, False]
    np.testing.assert_array_equal(got[ok], x[[0, 2, 3, 4]])
    np.testing.assert_array_equal(view[[5, 0]], x[[5, 0]])  # an older view still reads its files


def test_cached_array_indexing(tmp_path):
    c = TensorCache(tmp_path)
    x = tensors(7)
    c.put([sha(i) for i in range(7)], x)
    v = c.view([(sha(i), "unused") for i in (6, 2, 4)])
    assert len(v) == 3 and v.shape == (3, 45, 45, 3) and v.dtype == np.uint8
    np.testing.assert_array_equal(v[0], x[6])
    np.testing.assert_array_equal(v[-1], x[4])
    np.testing.assert_array_equal(v[1:], x[[2, 4]])
    np.testing.assert_array_equal(v[np.array([True, False, True])], x[[6, 4]])
    np.testing.assert_array_equal(np.asarray(v), x[[6, 2, 4]])
    assert v[np.array([], dtype=np.int64)].shape == (0, 45, 45, 3)


def test_sizes_are_separate_keys(tmp_path):
    small = TensorCache(tmp_path, 16)
    small.put([sha(0)], np.ones((1, 16, 16, 3), np.uint8))
    assert sha(0) not in TensorCache(tmp_path, 45)
    assert TensorCache(tmp_path, 16).get([sha(0)])[1].all()


def test_a_rebuild_between_reading_the_index_and_mapping_the_data(tmp_path):
    c = TensorCache(tmp_path)
    x = tensors(3)
    c.put([sha(i) for i in range(3)], x)
    reader = TensorCache(tmp_path)
    reader.refresh()  # has read generation 1's index, has not mapped its data yet
    TensorCache(tmp_path).compact()  # generation 2; data.1 is deleted
    real, calls = reader.refresh, []
    # The race: this get's own refresh happens before the rebuild; later ones are real.
    reader.refresh = lambda: calls.append(1) if len(calls) == 0 else real()
    got, ok = reader.get([sha(0), sha(2)])
    assert ok.all() and len(calls) == 1 and reader.status()["generation"] == 2
    np.testing.assert_array_equal(got, x[[0, 2]])
