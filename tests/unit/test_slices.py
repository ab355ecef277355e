"""Slice attributes on crops built in code, and per-slice metrics."""
from __future__ import annotations

import datetime as dt

import cv2
import numpy as np
import pytest

from annotator.core import slices


def face(size: int = 64, *, lower=(200, 200, 200), seed: int = 0) -> np.ndarray:
    """A textured grey face whose lower half has one BGR colour (a mask)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 200, (size, size, 3), dtype=np.uint8)
    img[size // 2:] = np.clip(np.array(lower) + rng.integers(-10, 10, (size - size // 2, size, 3)),
                              0, 255)
    return img


def test_a_dark_crop_is_dark_and_a_bright_one_is_not():
    img = face()
    dark = (img * 0.15).astype(np.uint8)
    assert slices.light_band(slices.attributes(dark)["brightness"]) == "dark"
    assert slices.light_band(slices.attributes(img)["brightness"]) == "bright"


def test_brightness_is_measured_around_the_head_when_the_frame_is_given():
    frame = np.full((200, 200, 3), 10, np.uint8)  # a night scene
    crop = np.full((40, 40, 3), 230, np.uint8)  # a white mask lit by a lamp
    attrs = slices.attributes(crop, box=(80, 80, 120, 120), frame=frame)
    assert slices.light_band(attrs["brightness"]) == "dark"
    assert slices.light_band(slices.attributes(crop)["brightness"]) == "bright"


def test_a_blurred_crop_is_blurry_and_the_sharp_one_is_not():
    img = face(96)
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    assert slices.sharpness_band(slices.attributes(blurred)["sharpness"]) == "blurry"
    assert slices.sharpness_band(slices.attributes(img)["sharpness"]) == "sharp"
    # Same figure as OpenCV's own Laplacian (house rule: geometry.sharpness matches it).
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    ref = cv2.Laplacian(grey, cv2.CV_64F)[1:-1, 1:-1].var()
    assert slices.attributes(img)["sharpness"] == pytest.approx(ref, rel=0.05)


@pytest.mark.parametrize("px, band", [(8, "<10"), (15, "10-20"), (30, "20-45"), (45, ">=45"),
                                       (120, ">=45")])
def test_face_height_bands(px, band):
    assert slices.face_band(slices.attributes(face(px))["face_px"]) == band


def test_face_height_comes_from_the_box_when_given():
    attrs = slices.attributes(face(64), box=(10, 20, 40, 50))  # a 30-px face, crop with margin
    assert attrs["face_px"] == 30 and slices.face_band(attrs["face_px"]) == "20-45"


@pytest.mark.parametrize("bgr, name", [((30, 30, 210), "red"), ((210, 60, 30), "blue"),
                                       ((40, 190, 40), "green"), ((235, 235, 235), "white"),
                                       ((20, 20, 20), "black"), ((110, 150, 200), "skin")])
def test_the_lower_face_colour(bgr, name):
    assert slices.attributes(face(64, lower=bgr))["colour"] == name


def test_the_upper_half_does_not_decide_the_colour():
    img = face(64, lower=(30, 30, 210))
    img[: 32] = (210, 60, 30)  # a blue hat
    assert slices.colour_name(img) == "red"


def _kps(nose_x, *, eyes=True, ears=False):
    k = np.zeros((17, 3))
    if eyes:
        k[slices.LEFT_EYE] = (60, 40, 0.9)
        k[slices.RIGHT_EYE] = (40, 40, 0.9)
        k[slices.NOSE] = (nose_x, 55, 0.9)
    if ears:
        k[slices.LEFT_EAR] = (65, 45, 0.8)
    return k


def test_pose_from_eye_and_nose_points():
    assert slices.pose(_kps(50)) == "frontal"
    assert slices.pose(_kps(68)) == "profile"  # nose past an eye: turned
    one_eye = _kps(50)
    one_eye[slices.RIGHT_EYE, 2] = 0.0
    assert slices.pose(one_eye) == "profile"
    assert slices.pose(_kps(0, eyes=False, ears=True)) == "away"
    assert slices.pose(None) == "unknown"


def test_hour_from_the_source_start_time():
    start = slices.start_time("cam3_2024-05-01_22-30-00.mp4")
    assert start == dt.datetime(2024, 5, 1, 22, 30, 0)
    attrs = slices.attributes(face(), start=start, timestamp_s=3 * 3600)
    assert attrs["hour"] == 1 and slices.hour_band(attrs["hour"]) == "00-06 night"
    assert slices.start_time("pedestrians_640x360.mp4") is None
    assert slices.start_time("cam_2024-13-45_99-00-00.mp4") is None
    assert slices.attributes(face())["hour"] is None


def test_bad_crops_are_refused():
    with pytest.raises(ValueError):
        slices.attributes(np.zeros((0, 5, 3), np.uint8))


def test_slice_report_counts_add_up_and_the_worst_band_comes_first():
    rng = np.random.default_rng(0)
    n = 400
    y = rng.integers(0, 2, n)
    dark = np.arange(n) < 100
    # Right everywhere except on dark crops, where it is a coin toss.
    pred = np.where(dark & (rng.random(n) < 0.5), 1 - y, y)
    probs = np.eye(2)[pred] * 0.8 + 0.1
    rows = [{"brightness": 20.0 if d else 150.0, "face_px": 30, "source": "cam1"} for d in dark]
    report = slices.slice_report(slices.bands(rows), y, probs)
    for attr in slices.ATTRIBUTES:
        assert sum(r["n"] for r in report if r["attribute"] == attr) == n
    worst = report[0]
    assert (worst["attribute"], worst["band"], worst["n"]) == ("light", "dark", 100)
    assert worst["error_low"] < worst["error"] < worst["error_high"]
    assert worst["balanced_accuracy"] < 0.7
    bright = next(r for r in report if r["band"] == "bright")
    assert bright["errors"] == 0 and bright["balanced_accuracy"] == 1.0


def test_a_tiny_band_with_two_mistakes_does_not_outrank_a_large_bad_band():
    y = np.zeros(404, int)
    pred = np.zeros(404, int)
    pred[:120] = 1  # 30% wrong on the big band
    pred[400:402] = 1  # 2 of 4 wrong on the tiny band
    band = np.array(["big"] * 400 + ["tiny"] * 4, dtype=object)
    report = slices.slice_report({"x": band}, y, np.eye(2)[pred])
    assert report[0]["band"] == "big"
