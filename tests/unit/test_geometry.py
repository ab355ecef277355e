"""Head boxes from real openpifpaf.Annotation objects and from face boxes; crop sharpness.

Keypoints are placed from adult head proportions around a known head (centre, height H), so each
test knows where the head really is and checks the box lands on it.
"""
from __future__ import annotations

import numpy as np
import pytest

from annotator.media.detectors import import_openpifpaf, people_from_annotations
from annotator.core.geometry import (
    LEFT_EAR, LEFT_EYE, LEFT_SHOULDER, NOSE, RIGHT_EAR, RIGHT_EYE, RIGHT_SHOULDER,
    Person, head_box, head_box_from_face, neuralet_head_box, sharpness, square_box,
)

FRAME = (640, 480)  # width, height


def person_keypoints(cx, cy, h, *, conf=0.9):
    """COCO (17, 3) keypoints of a frontal person whose head centre is (cx, cy), head height h."""
    k = np.zeros((17, 3), dtype=np.float32)
    k[NOSE] = (cx, cy + 0.13 * h, conf)
    k[LEFT_EYE] = (cx + h / 7.2, cy, conf)  # the person's left eye is on the image right
    k[RIGHT_EYE] = (cx - h / 7.2, cy, conf)
    k[LEFT_EAR] = (cx + h / 3.2, cy + 0.02 * h, conf)
    k[RIGHT_EAR] = (cx - h / 3.2, cy + 0.02 * h, conf)
    k[LEFT_SHOULDER] = (cx + h / 1.2, cy + h, conf)
    k[RIGHT_SHOULDER] = (cx - h / 1.2, cy + h, conf)
    for i in range(7, 17):  # arms and legs below, inside the frame or not: irrelevant here
        k[i] = (cx + (i % 2 - 0.5) * h, cy + h * (1.5 + (i - 7) * 0.4), conf * 0.5)
    return k


def annotation(kps, score=0.8):
    """A real openpifpaf.Annotation holding these keypoints, as the decoder returns it."""
    openpifpaf = import_openpifpaf()
    from openpifpaf.plugins.coco.constants import COCO_KEYPOINTS, COCO_PERSON_SKELETON

    ann = openpifpaf.Annotation(keypoints=COCO_KEYPOINTS, skeleton=COCO_PERSON_SKELETON)
    return ann.set(np.asarray(kps, dtype=np.float32), fixed_score=score)


def box_of(kps, **kw):
    (person,) = people_from_annotations([annotation(kps)])
    return head_box(person, FRAME, **kw)


def drop(kps, *idx):
    k = kps.copy()
    k[list(idx), 2] = 0.0
    return k


def covers_head(hb, cx, cy, h, *, share=0.9):
    """Share of the true head square (side h around the centre) inside the box."""
    x1, y1, x2, y2 = cx - h / 2, cy - h / 2, cx + h / 2, cy + h / 2
    ix = max(0.0, min(x2, hb.x2) - max(x1, hb.x1))
    iy = max(0.0, min(y2, hb.y2) - max(y1, hb.y1))
    return ix * iy / (h * h) >= share


def test_annotation_roundtrip_keeps_pixels_and_score():
    kps = person_keypoints(300, 200, 40)
    (person,) = people_from_annotations([annotation(kps, score=0.66)])
    assert person.keypoints.shape == (17, 3)
    np.testing.assert_allclose(person.keypoints, kps)
    assert person.score == pytest.approx(0.66)


def test_full_keypoints_box_is_square_on_the_head():
    hb = box_of(person_keypoints(300, 200, 40), margin=0.15)
    assert hb.ok and hb.method == "nose+eyes+ears+shoulders"
    assert hb.width == hb.height
    assert hb.size == pytest.approx(40, rel=0.1)
    assert hb.width == pytest.approx(40 * 1.3, abs=2)  # margin 0.15 on each side
    assert covers_head(hb, 300, 200, 40)
    cx, cy = (hb.x1 + hb.x2) / 2, (hb.y1 + hb.y2) / 2
    assert abs(cx - 300) <= 1.5 and abs(cy - 202) <= 2.5
    # Neuralet's rule also finds this one (the baseline for the recovered cases below)
    assert neuralet_head_box(person_keypoints(300, 200, 40), FRAME) is not None


def test_margin_grows_the_box():
    kps = person_keypoints(300, 200, 40)
    assert box_of(kps, margin=0.5).width > box_of(kps, margin=0.0).width + 30


@pytest.mark.parametrize("missing", [(LEFT_SHOULDER,), (RIGHT_SHOULDER,), (LEFT_SHOULDER, RIGHT_SHOULDER)])
def test_missing_shoulder_still_finds_the_head(missing):
    kps = drop(person_keypoints(300, 200, 40), *missing)
    assert neuralet_head_box(kps, FRAME) is None  # the heads Neuralet dropped
    hb = box_of(kps)
    assert hb.ok
    assert hb.size == pytest.approx(40, rel=0.15)
    assert covers_head(hb, 300, 200, 40)


def test_missing_eyes_uses_ears_and_nose():
    kps = drop(person_keypoints(300, 200, 40), LEFT_EYE, RIGHT_EYE)
    assert neuralet_head_box(kps, FRAME) is None
    hb = box_of(kps)
    assert hb.ok and "eyes" not in hb.method
    assert hb.size == pytest.approx(40, rel=0.15)
    assert covers_head(hb, 300, 200, 40)


def test_only_ears_and_nose():
    kps = person_keypoints(300, 200, 40)
    only = np.zeros_like(kps)
    only[[NOSE, LEFT_EAR, RIGHT_EAR]] = kps[[NOSE, LEFT_EAR, RIGHT_EAR]]
    hb = box_of(only)
    assert hb.ok and hb.method == "nose+ears"
    assert hb.size == pytest.approx(40, rel=0.15)
    assert covers_head(hb, 300, 200, 40, share=0.85)


def test_profile_one_eye_one_ear_nose():
    kps = person_keypoints(300, 200, 40)
    prof = np.zeros_like(kps)
    prof[[NOSE, LEFT_EYE, LEFT_EAR]] = kps[[NOSE, LEFT_EYE, LEFT_EAR]]
    hb = box_of(prof)
    assert hb.ok
    assert 0.8 * 40 <= hb.size <= 1.3 * 40  # scale from what is present


def test_person_at_frame_edge_box_stays_inside_and_square():
    kps = person_keypoints(8, 200, 40)  # head centre 8 px from the left edge
    kps[[RIGHT_EAR, RIGHT_SHOULDER], 2] = 0.0  # outside the frame: not seen
    hb = box_of(kps)
    assert hb.ok
    assert hb.x1 == 0 and hb.y1 >= 0 and hb.x2 <= FRAME[0] and hb.y2 <= FRAME[1]
    assert hb.width == hb.height  # slid inside, not clipped
    assert hb.x1 <= 8 <= hb.x2 and hb.y1 <= 200 <= hb.y2
    # the bottom-right corner, clipped when the frame is smaller than the crop
    assert square_box(5, 5, 20, (10, 10)) == (0, 0, 10, 10)
    assert square_box(638, 478, 20, FRAME) == (620, 460, 640, 480)
    assert square_box(638, 478, 20, FRAME, square=False) == (628, 468, 640, 480)


def test_head_outside_the_frame_is_dropped():
    kps = person_keypoints(-30, 200, 40)
    hb = box_of(kps)
    assert not hb.ok and hb.reason in ("outside_frame", "no_head")


def test_tiny_person_below_min_size_is_dropped():
    kps = person_keypoints(300, 200, 10)
    assert box_of(kps, min_size=16).reason == "min_size"
    assert box_of(kps, min_size=8).ok


def test_shoulders_only_or_lone_nose_give_no_box():
    kps = person_keypoints(300, 200, 40)
    back = drop(kps, NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)  # seen from behind
    assert box_of(back).reason == "no_head"
    nose = np.zeros_like(kps)
    nose[NOSE] = kps[NOSE]
    assert box_of(nose).reason == "no_scale"


def test_low_confidence_keypoints_count_as_missing():
    kps = person_keypoints(300, 200, 40, conf=0.1)
    assert box_of(kps).reason == "no_head"
    assert box_of(kps, min_conf=0.05).ok


def test_face_box_gives_head_box_with_same_margin_logic():
    hb = head_box_from_face((100, 100, 120, 124), FRAME, margin=0.15)
    assert hb.ok and hb.method == "face"
    assert hb.size == pytest.approx(1.25 * 24)
    assert hb.width == hb.height == round(1.25 * 24 * 1.3)
    assert hb.x1 < 100 and hb.x2 > 120 and hb.y1 < 100 and hb.y2 > 124
    assert head_box_from_face((100, 100, 108, 108), FRAME, min_size=16).reason == "min_size"
    # a person with a face box uses it, whatever its keypoints say
    p = Person(keypoints=np.zeros((17, 3)), face_box=(100, 100, 120, 124))
    assert head_box(p, FRAME).box == hb.box


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="keypoints"):
        head_box(Person(keypoints=np.zeros((5, 3))), FRAME)
    with pytest.raises(ValueError, match="margin"):
        head_box(Person(face_box=(0, 0, 5, 5)), FRAME, margin=-1)
    with pytest.raises(ValueError, match="frame_size"):
        head_box(Person(face_box=(0, 0, 5, 5)), (0, 10))


def test_sharpness_matches_opencv_and_ranks_blur():
    import cv2

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 40), dtype=np.uint8)
    blurred = cv2.GaussianBlur(img, (7, 7), 2.0)
    ref = cv2.Laplacian(img.astype(np.float64), cv2.CV_64F)[1:-1, 1:-1].var()
    assert sharpness(img) == pytest.approx(ref)
    assert sharpness(img) > 10 * sharpness(blurred)
    assert sharpness(np.full((30, 30), 128, np.uint8)) == 0.0
    bgr = np.dstack([img, img, img])
    assert sharpness(bgr) == pytest.approx(sharpness(img), rel=1e-6)


def test_face_at_the_top_edge_is_kept():
    # face centre inside the frame, the head above it is not: keep it, box slid inside
    hb = head_box_from_face((300, -2, 330, 10), FRAME)
    assert hb.ok and hb.y1 == 0 and hb.width == hb.height
    assert head_box_from_face((300, -30, 330, -5), FRAME).reason == "outside_frame"
