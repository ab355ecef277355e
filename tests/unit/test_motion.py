"""The motion gate on frames built in code: still noise and slow light change give no windows,
a moving blob a window around it, a face seen lately a window for ``hold_s`` seconds, and a face
that never moves (a poster, a false face in the empty scene) not for more than ``max_still_s``."""
from __future__ import annotations

import doctest
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annotator.core import motion
from annotator.core.motion import MotionGate, merge_windows

W, H = 640, 360


def scene(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    base = 60 + 80 * xx / W + 30 * np.sin(yy / 23.0) + 30 * np.sin(xx / 17.0)
    base += rng.normal(0, 10, (H, W))
    return np.repeat(base[..., None], 3, axis=2)


def noisy(base: np.ndarray, rng, *, light: float = 0.0, sigma: float = 3.0) -> np.ndarray:
    return np.clip(base + light + rng.normal(0, sigma, base.shape), 0, 255).astype(np.uint8)


def inside(box, win) -> bool:
    return win[0] <= box[0] and win[1] <= box[1] and box[2] <= win[2] and box[3] <= win[3]


def test_doctests():
    assert doctest.testmod(motion).failed == 0


@settings(max_examples=200, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40),
                                  st.sampled_from([1, 3, 4]))),
       st.integers(1, 9), st.booleans())
def test_shrink_is_the_block_mean_of_the_channel_mean(frame, step, grey_frame):
    """The fast integer sums give what the plain float mean gives, on any shape (grey, one
    channel, BGR, BGRA; blocks that do not fit dropped)."""
    f = frame[..., 0] if grey_frame else frame  # a grey (H, W) frame
    grey = f.astype(np.float64) if f.ndim == 2 else f[..., :3].astype(np.float64).mean(axis=2)
    h, w = (grey.shape[0] // step) * step, (grey.shape[1] // step) * step
    want = grey[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))
    got = motion.shrink(f, step)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.allclose(got, want, atol=1e-3)


def test_still_camera_with_sensor_noise_and_slow_light_change_needs_no_detector():
    rng, base = np.random.default_rng(1), scene()
    gate = MotionGate((W, H))
    assert gate.windows(noisy(base, rng), 0.0) == [(0, 0, W, H)]  # no background yet
    # 10 minutes at 2 fps compressed: the light rises 40 grey levels over 60 frames
    found = [gate.windows(noisy(base, rng, light=40 * i / 60), i / 2) for i in range(1, 61)]
    assert found == [[]] * 60


def test_a_moving_blob_gets_a_window_that_holds_it_and_little_else():
    rng, base = np.random.default_rng(2), scene()
    gate = MotionGate((W, H))
    gate.windows(noisy(base, rng), 0.0)
    gate.windows(noisy(base, rng), 0.5)
    for i, x in enumerate(range(100, 400, 60)):
        img = base.copy()
        img[150:230, x:x + 50] = 230
        wins = gate.windows(noisy(img, rng), 1.0 + i / 2)
        assert any(inside((x, 150, x + 50, 230), w) for w in wins), (x, wins)
        area = sum((w[2] - w[0]) * (w[3] - w[1]) for w in wins)
        assert area < 0.6 * W * H


def test_a_face_seen_is_looked_for_hold_s_seconds_after_it_stopped_moving():
    rng, base = np.random.default_rng(3), scene()
    gate = MotionGate((W, H), hold_s=3.0)
    gate.windows(noisy(base, rng), 0.0)
    img = base.copy()
    img[40:100, 500:550] = 220  # appears, then stays still
    assert gate.windows(noisy(img, rng), 0.5)
    gate.seen([(500, 40, 550, 100)], 0.5)
    held = [gate.windows(noisy(img, rng), t / 2) for t in range(2, 23)]
    assert held[-3:] == [[]] * 3  # faded into the background, seen more than 3 s ago
    gate.seen([(500, 40, 550, 100)], 11.0)
    for t in (11.5, 13.0, 14.0):
        wins = gate.windows(noisy(img, rng), t)
        assert any(inside((500, 40, 550, 100), w) for w in wins)
    assert gate.windows(noisy(img, rng), 14.5) == []


def test_a_new_scene_is_detected_whole_once_then_is_background():
    """Lights switched on, night mode, a moved camera: the background starts over at once
    (blending would call the whole frame moving for ~2 tau_s), and the old faces' places are
    dropped with it."""
    rng = np.random.default_rng(4)
    old = scene(4)
    new = np.roll(old, W // 3, axis=1)  # the camera was turned
    gate = MotionGate((W, H), hold_s=3.0)
    for i in range(4):
        gate.windows(noisy(old, rng), i / 2)
    gate.seen([(500, 40, 550, 100)], 1.5)  # a face of the old scene
    assert gate.windows(noisy(new, rng), 2.0) == [(0, 0, W, H)]
    after = [gate.windows(noisy(new, rng), 2.5 + i / 2) for i in range(6)]
    assert after == [[]] * 6  # no ghost of the old scene, no window at the old face


def test_a_scene_change_resets_but_a_light_drift_or_a_walker_does_not():
    rng, base = np.random.default_rng(6), scene(6)
    gate = MotionGate((W, H))
    for i in range(3):
        gate.windows(noisy(base, rng), i / 2)
    bg = gate._bg.copy()
    gate.windows(noisy(base, rng, light=4), 1.5)  # drift: below the threshold everywhere
    img = base.copy()
    img[150:230, 300:350] = 230
    gate.windows(noisy(img, rng), 2.0)  # a walker: a small share of the cells
    assert np.abs(gate._bg - bg).max() < 0.5 * 230  # blended, not replaced
    gate.windows(noisy(base, rng, light=60), 2.5)  # the lights went on: every cell changed
    assert np.allclose(gate._bg, motion.shrink(noisy(base, rng, light=60), gate.step), atol=3)


def follow(gate, frames, box, *, step=0.5):
    """Run the gate over ``frames`` as extract does, with a detector that finds ``box`` whenever
    a window holds it. Returns, per frame, whether the box was looked for."""
    looked = []
    for i, f in enumerate(frames):
        t = i * step
        wins = gate.windows(f, t)
        found = any(inside(box, w) for w in wins)
        if found:
            gate.seen([box], t)
        looked.append(found)
    return looked


def test_a_face_that_never_moves_is_looked_for_max_still_s_seconds_not_all_day():
    rng, base = np.random.default_rng(9), scene()
    poster = base.copy()
    poster[40:100, 500:550] = 220  # part of the scene from the first frame on
    gate = MotionGate((W, H), hold_s=3.0, max_still_s=10.0)
    looked = follow(gate, [noisy(poster, rng) for _ in range(60)], (500, 40, 550, 100))
    assert all(looked[:21])  # the first frame is all motion (no background yet): held 10 s
    assert not any(looked[22:])  # then no detector runs on the still scene


def test_a_still_person_who_moves_a_little_is_looked_for_as_long_as_they_stay():
    rng, base = np.random.default_rng(10), scene()
    frames = []
    for i in range(60):  # stands at one place for 30 s, raising a hand every 4 s
        img = base.copy()
        img[40:100, 500:550] = 220
        if i % 8 == 0:
            img[100:130, 520:545] = 250
        frames.append(noisy(img, rng))
    gate = MotionGate((W, H), hold_s=3.0, max_still_s=10.0)
    assert all(follow(gate, frames, (500, 40, 550, 100)))


def test_a_state_saved_before_max_still_s_still_loads():
    gate = MotionGate((W, H))
    state = json.loads(json.dumps(gate.state()))
    state["seen"] = [[4.0, 500, 40, 550, 100]]  # (time, box): no motion time
    old = MotionGate.from_state(state)
    assert any(inside((500, 40, 550, 100), w) for w in old.cover([], 5.0))


def test_a_moving_camera_gets_the_whole_frame():
    rng = np.random.default_rng(4)
    base = scene()
    gate = MotionGate((W, H))
    gate.windows(noisy(base, rng), 0.0)
    shifted = np.roll(base, 40, axis=1)  # the view panned
    assert gate.windows(noisy(shifted, rng), 0.5) == [(0, 0, W, H)]


def test_windows_never_overlap_and_lie_in_the_frame():
    rng = np.random.default_rng(5)
    boxes = [tuple(int(v) for v in (x, y, x + w, y + h)) for x, y, w, h in
             zip(rng.integers(0, 500, 40), rng.integers(0, 300, 40), rng.integers(10, 200, 40),
                 rng.integers(10, 200, 40))]
    out = merge_windows(boxes)
    for i, a in enumerate(out):
        for b in out[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    for b in boxes:  # every input box lies inside one merged window
        assert any(inside(b, w) for w in out)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        MotionGate((0, 10))
    with pytest.raises(ValueError):
        MotionGate((W, H), tau_s=0)


def test_a_gate_rebuilt_from_its_state_goes_on_exactly():
    rng, base = np.random.default_rng(6), scene()
    frames = []
    for i in range(12):
        img = base.copy()
        img[100:180, 40 * i:40 * i + 50] = 230
        frames.append(noisy(img, rng))
    a = MotionGate((W, H))
    for i, f in enumerate(frames[:6]):
        a.windows(f, i / 2)
    a.seen([(200, 100, 250, 180)], 2.5)
    b = MotionGate.from_state(json.loads(json.dumps(a.state())))
    for i, f in enumerate(frames[6:], 6):
        assert a.windows(f, i / 2) == b.windows(f, i / 2)


def test_a_new_frame_size_starts_the_background_over():
    rng, base = np.random.default_rng(7), scene()
    gate = MotionGate((W, H))
    gate.windows(noisy(base, rng), 0.0)
    assert gate.windows(noisy(base, rng), 0.5) == []
    small = noisy(base[: H // 2, : W // 2], rng)
    assert gate.windows(small, 1.0) == [(0, 0, W // 2, H // 2)]


def test_a_batch_moved_ahead_still_holds_a_face_told_before_the_next_cover():
    """moving() for a whole batch first, then cover() frame by frame: a face told between two
    covers is a window from the next one on; cover changes nothing; faces of frames before a
    resolution change are not held."""
    rng, base = np.random.default_rng(8), scene()
    img = base.copy()
    img[40:100, 500:550] = 220
    gate = MotionGate((W, H), tau_s=0.1)  # a still face is background one frame later
    gate.windows(noisy(base, rng), 0.0)
    moving = [gate.moving(noisy(img, rng), t) for t in (0.5, 1.0, 1.5)]
    assert moving[0] and moving[1:] == [[], []]
    assert gate.cover(moving[1], 1.0) == gate.cover(moving[1], 1.0) == []
    gate.seen([(500, 40, 550, 100)], 0.5)
    for m, t in zip(moving[1:], (1.0, 1.5)):
        assert any(inside((500, 40, 550, 100), w) for w in gate.cover(m, t))
    assert gate.cover(moving[1], 1.0, held=False) == []
    gate.moving(noisy(base[: H // 2, : W // 2], rng), 2.0)  # the stream's size changed
    gate.seen([(500, 40, 550, 100)], 1.5)  # told late, of a frame before the change
    assert gate.cover([], 2.0) == []
