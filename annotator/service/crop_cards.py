"""What a label page shows of a crop: the card (image bytes read ahead), the active model's
guess, the other crops of its track, and the frame around it.
"""
from __future__ import annotations

import base64
import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from annotator.core.geometry import context_window
from annotator.data import db, model_reports, model_versions, reports
from annotator.media import images, video
from annotator.service.workspace import Workspace


SMALL_CROP_PX = 64  # below this, the context view is on by default


CONTEXT_WIDTH = 480  # px: the context view is rendered at this width


STRIP_MAX = 12  # track mates shown beside a crop (and decided by one track key)


@dataclass(frozen=True)
class Card:
    """One crop as the label pages show it, with its image bytes already read (prefetch)."""

    crop_id: int
    image: bytes
    mime: str
    width: int
    height: int
    sampling: str | None
    guess: str | None = None  # the active model's class for it
    confidence: float | None = None  # probability of that class
    probs: tuple[float, ...] | None = None
    source_kind: str | None = None
    source_uri: str | None = None
    source_name: str | None = None
    frame_index: int | None = None
    box: tuple[float, float, float, float] | None = None
    votes_needed: int = 1
    source_id: int | None = None
    track_id: int | None = None
    timestamp_s: float | None = None
    status: str | None = None
    label: str | None = None  # strip cards: the crop's current label, if it has one
    decidable: bool = True  # strip cards: this annotator may label it now
    strip: tuple["Card", ...] = ()  # the other kept crops of the same track
    context: bytes | None = None  # JPEG of the frame around the head, display-sized

    def data_uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.image).decode()}"

    @property
    def small(self) -> bool:
        """Too few pixels to decide from the crop alone: the frame around it helps."""
        return max(self.width, self.height) < SMALL_CROP_PX

    def context_uri(self) -> str | None:
        if self.context is None:
            return None
        return f"data:image/jpeg;base64,{base64.b64encode(self.context).decode()}"

    @property
    def has_frame(self) -> bool:
        """Whether the frame around the crop can be shown (the source video is on disk)."""
        if self.box is None or not self.source_uri or not os.path.isfile(self.source_uri):
            return False
        return self.source_kind == "image" or (self.source_kind == "video"
                                               and self.frame_index is not None)

    @property
    def frame_gone(self) -> bool:
        """The crop came from a frame whose source file was deleted (retention, erasure)."""
        return (self.box is not None and self.source_kind in ("video", "image")
                and bool(self.source_uri) and not os.path.isfile(self.source_uri))


def cards(ws: Workspace, items: Sequence[tuple[int, str | None]], *,
          annotator_id: int | None = None) -> list[Card]:
    """Cards (image bytes, source, the model's guess) for ``(crop_id, reason)`` pairs, in order.

    With ``annotator_id`` each card also carries its track strip (what that annotator may
    decide with one track key) and, when the source is on disk, the context view: the label
    page reads both without waiting (they are built in the background claim).
    """
    out = _cards(ws, items)
    if annotator_id is None:
        return out
    limit, blur = ws.config.limits.max_image_pixels, ws.config.privacy.blur_faces
    return [dataclasses.replace(c, strip=tuple(track_strip(ws, c, annotator_id)),
                                context=context_jpeg(c, max_pixels=limit, blur=blur))
            for c in out]


def _cards(ws: Workspace, items: Sequence[tuple[int, str | None]]) -> list[Card]:
    if not items:
        return []
    reasons = dict(items)
    ids = [cid for cid, _ in items]
    model = active_model(ws)
    with ws.read_session() as s:
        info = reports.crop_cards(s, ids)
        # An audit crop waits for one person's vote beside the machine's (votes_needed = 2):
        # shown as needing a second vote it would stand out from every other crop.
        machine = reports.machine_labeled(s, ids)
        probs_of = {}
        if model is not None:
            pids, probs, _ = model_reports.prediction_arrays(s, model.id, ids)
            probs_of = {int(i): p for i, p in zip(pids, probs)}
    out = []
    for r in info.itertuples(index=False):
        p = probs_of.get(int(r.crop_id))
        guess = conf = None
        if p is not None and model is not None and len(model.classes) == len(p):
            k = int(np.argmax(p))
            guess, conf = model.classes[k], float(p[k])
        path = ws.store.path(r.path)
        try:
            data = path.read_bytes()
        except OSError:
            continue  # file gone: the crop is not shown (it stays held until the lease ends)
        box = None if pd.isna(r.x1) else (float(r.x1), float(r.y1), float(r.x2), float(r.y2))
        out.append(Card(
            crop_id=int(r.crop_id), image=data, mime=images.mime_type(path), width=int(r.width),
            height=int(r.height), sampling=reasons.get(int(r.crop_id)), guess=guess,
            confidence=conf, probs=None if p is None else tuple(float(x) for x in p),
            source_kind=r.source_kind, source_uri=r.source_uri, source_name=r.source_name,
            frame_index=None if pd.isna(r.frame_index) else int(r.frame_index), box=box,
            votes_needed=int(r.votes_needed) - (int(r.crop_id) in machine),
            source_id=int(r.source_id),
            track_id=None if pd.isna(r.track_id) else int(r.track_id),
            timestamp_s=None if pd.isna(r.timestamp_s) else float(r.timestamp_s),
            status=r.status,
        ))
    return out


def track_strip(ws: Workspace, card: Card, annotator_id: int, *, limit: int = STRIP_MAX) -> list[Card]:
    """The other kept crops of the card's track, in time order, as small cards: each says its
    current label and whether this annotator may decide it now (unlabeled, not held by someone
    else, no vote of theirs yet)."""
    if card.track_id is None:
        return []
    with ws.read_session() as s:
        mates = reports.track_mates(s, card.crop_id, limit=limit)
        labels = reports.current_values(s, mates["crop_id"].tolist()) if len(mates) else {}
        mine = reports.voted_by(s, annotator_id, mates["crop_id"].tolist()) if len(mates) else set()
        # A queued crop's machine label is not shown: an audit crop looks like any open crop.
        queued = mates.loc[mates["status"] == db.CropStatus.UNLABELED, "crop_id"].tolist()
        for cid in reports.machine_labeled(s, queued) if queued else ():
            labels.pop(int(cid), None)
    out = []
    for r in mates.itertuples(index=False):
        try:
            data = ws.store.path(r.path).read_bytes()
        except OSError:
            continue
        held = None if pd.isna(r.held_by) else int(r.held_by)
        cid = int(r.crop_id)
        out.append(Card(
            crop_id=cid, image=data, mime=images.mime_type(r.path), width=int(r.width),
            height=int(r.height), sampling="track", source_id=int(r.source_id),
            track_id=card.track_id, status=r.status, label=labels.get(cid),
            timestamp_s=None if pd.isna(r.timestamp_s) else float(r.timestamp_s),
            decidable=(r.status == db.CropStatus.UNLABELED and held in (None, annotator_id)
                       and cid not in mine),
        ))
    return out


def context_jpeg(card: Card, *, width: int = CONTEXT_WIDTH, reach: float = 1.0,
                 max_pixels: int = images.MAX_PIXELS, blur: bool = True) -> bytes | None:
    """The frame around the head as display-sized JPEG bytes (smooth upscaling: a 22-px head
    reads better as a soft picture than as 16x blocks), or None without a source on disk."""
    view = frame_context(card, max_width=width, pad=reach, upscale_to=width,
                         max_pixels=max_pixels, blur=blur)
    return None if view is None else images.encode_jpeg(view, quality=88)


def frame_context(card: Card, *, max_width: int = 720, pad: float = 1.5,
                  upscale_to: int | None = None, max_pixels: int = images.MAX_PIXELS,
                  blur: bool = True) -> np.ndarray | None:
    """The region of the source frame (video frame or still image) around the crop, with the
    box drawn, as RGB (H, W, 3); None when the source file is not on disk or unreadable.
    ``upscale_to`` enlarges a small region to that width (bicubic). ``blur``: every other face
    in the frame is blurred (privacy; config ``privacy.blur_faces``)."""
    if not card.has_frame:
        return None
    frame = video.read_frame(card.source_uri, kind=card.source_kind, index=card.frame_index,
                             max_pixels=max_pixels)
    if frame is None:
        return None
    import cv2

    if blur:
        from annotator.media.blur import blur_others

        frame = blur_others(frame, card.box)

    h, w = frame.shape[:2]
    l, t, r, b = context_window(card.box, (w, h), pad=pad)
    x1, y1, x2, y2 = card.box
    cv2.rectangle(frame, (int(x1), int(y1)), (int(x2), int(y2)), (0, 200, 255), 2)
    view = frame[t:b, l:r]
    if view.size == 0:
        return None
    target = max_width if view.shape[1] > max_width else upscale_to
    if target and target != view.shape[1]:
        scale = target / view.shape[1]
        view = cv2.resize(view, (target, max(1, int(view.shape[0] * scale))),
                          interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    return cv2.cvtColor(view, cv2.COLOR_BGR2RGB)


def active_model(ws: Workspace) -> model_versions.Version | None:
    with ws.read_session() as s:
        mv = model_versions.active_model(s)
        return None if mv is None else model_versions.Version.of(mv)
