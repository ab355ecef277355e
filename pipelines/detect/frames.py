"""detect's frame loop for one source: detect, cut head crops, classify them in one call,
follow them with the footage keeper (``annotator.core.footage``, as extract does), vote one
label per track, and write rows, hard crops and the annotated video as tracks end."""
from __future__ import annotations

import time
from collections import Counter

import numpy as np

from annotator.core import votes
from annotator.core.footage import Ended, Keeper, Step, candidate, head_crops
from annotator.media import images, video
from pipelines.common.footage_source import expected_frames, source_key
from pipelines.detect.options import Settings, SourceDetect
from pipelines.detect.outputs import unique_name
from pipelines.detect.rendering import VideoOut, annotated, output_fps


class _Track:
    """What a track has gathered so far: its vote and a few numbers (its candidate crops wait
    in the keeper)."""

    def __init__(self, tid: int, k: int, method: str, n_classes: int):
        self.id = tid
        self.voter = votes.Voter(method, k)
        self.first_t = self.last_t = None
        self.frames = 0
        self.unknown = 0
        self.prob_sum = np.zeros(n_classes)
        self.label = self.state = None
        self.frame_changes = self.voted_changes = 0

    def add(self, t: float, label: str, probs: np.ndarray) -> str | None:
        self.first_t = t if self.first_t is None else self.first_t
        self.last_t = t
        self.frames += 1
        self.unknown += label == votes.UNKNOWN
        self.prob_sum += probs
        if self.label is not None and label != self.label:
            self.frame_changes += 1
        self.label = label
        state = self.voter.add(label)
        if self.state is not None and state != self.state:
            self.voted_changes += 1
        self.state = state
        return state


class SourceRun:
    """One source of a detect run; figures go to ``res``, rows to ``tables``."""

    def __init__(self, spec, st: Settings, detector, infer, classes, tables, tmp, names, progress,
                 res: SourceDetect, timings: Counter):
        self.spec, self.st, self.detector, self.infer = spec, st, detector, infer
        self.classes, self.tables, self.tmp, self.names = classes, tables, tmp, names
        self.progress, self.res, self.timings = progress, res, timings
        self.keeper = Keeper(st.per_track)  # run-local ids from 1 (the queue offsets them)
        self.tracks: dict[int, _Track] = {}
        self.minutes: dict[int, Counter] = {}
        self.minute_tracks: dict[int, set] = {}
        self.dropped: Counter = Counter()
        self.by_label: Counter = Counter()
        self.per_frame: Counter = Counter()
        self.tracks_by_label: Counter = Counter()
        self.span = 0.0
        self.frame_changes = self.voted_changes = 0
        self.writer = None

    def run(self):
        spec, st, res = self.spec, self.st, self.res
        res.key, res.sha256 = source_key(spec)
        info = video.probe(spec)
        res.fps, res.frame_count, res.width, res.height = (info.fps, info.frame_count, info.width,
                                                           info.height)
        reader = video.FrameReader(spec, fps=st.fps, every=st.every, max_seconds=st.max_seconds)
        expected = expected_frames(info, st, 0)
        t_start = time.perf_counter()
        try:
            def report(total):
                rate = res.frames / max(time.perf_counter() - t_start, 1e-9)
                self.progress(res.frames, total, f"{res.detections} faces, {len(self.tracks)} "
                              f"live tracks, {rate:.1f} frames/s", stage=spec.name)

            for batch in video.batches(reader, st.batch_size, self.timings):
                t = time.perf_counter()
                people_per_frame = self.detector.people([f.image for f in batch])
                self.timings["detect"] += time.perf_counter() - t
                for frame, people in zip(batch, people_per_frame):
                    self.frame(frame, people, info)
                report(expected)  # None for a stream: a bar without an end
            report(res.frames)  # the real count: the expected one is an estimate
        finally:  # after an error too: every detection row gets its track and minute rows
            self.finish()
            if self.writer is not None:
                self.timings["video"] += self.writer.close()
        if reader.problem:
            res.error = reader.problem

    def frame(self, frame, people, info) -> Step:
        """One sampled frame's heads: classified, tracked, voted, written; the keeper's step."""
        st, res = self.st, self.res
        res.frames += 1
        res.video_seconds = max(res.video_seconds, float(frame.timestamp_s))
        t = time.perf_counter()
        found = head_crops(frame.image, people, margin=st.margin, min_size=st.min_size,
                           min_sharpness=st.min_sharpness, dropped=self.dropped)
        res.detections += len(found)
        x = model_inputs([crop for _p, _hb, crop, _s in found])
        self.timings["crop"] += time.perf_counter() - t
        t = time.perf_counter()
        probs, emb = classify(self.infer, x)
        self.timings["classify"] += time.perf_counter() - t
        t = time.perf_counter()
        labels = votes.frame_labels(probs, self.classes, min_prob=st.min_prob)
        step = self.keeper.update(frame.timestamp_s, [
            candidate(frame.index, frame.timestamp_s, *f,
                      data=(probs[i].astype(np.float32), emb[i].astype(np.float32)))
            for i, f in enumerate(found)])
        for ended in step.ended:
            self._end_track(ended)
        drawn = []
        minute = int(frame.timestamp_s // 60)
        counts = self.minutes.setdefault(minute, Counter())
        seen = self.minute_tracks.setdefault(minute, set())
        for i, (tid, (person, hb, _crop, _sharp)) in enumerate(zip(step.ids, found)):
            tr = self.tracks.get(tid)
            if tr is None:
                tr = self.tracks[tid] = _Track(tid, st.k, st.method, len(self.classes))
            state = tr.add(float(frame.timestamp_s), labels[i], probs[i])
            shown = state or votes.UNKNOWN
            self.by_label[shown] += 1
            self.per_frame[labels[i]] += 1
            counts["faces"] += 1
            counts[shown] += 1
            seen.add(tid)
            self.tables.detection(self.spec.name, frame, tid, hb, person.score, labels[i],
                                  probs[i], shown)
            drawn.append((hb, tid, shown, float(probs[i].max())))
        self.timings["track"] += time.perf_counter() - t
        if st.video:
            t = time.perf_counter()
            self._draw(frame, drawn, info)
            self.timings["video"] += time.perf_counter() - t
        return step

    def finish(self) -> list[Ended]:
        """End every live track and write the per-minute rows; the tracks that ended."""
        ended = self.keeper.finish()
        for e in ended:
            self._end_track(e)
        self._finish()
        return ended

    # -- what detect does with a track's kept crops: hard crops, when the track is uncertain --
    def _end_track(self, ended: Ended):
        tr = self.tracks.pop(ended.track_id, None)
        if tr is None:
            return
        st = self.st
        span = max(0.0, tr.last_t - tr.first_t)
        rate = votes.flicker_rate([tr.frame_changes], [span])
        mean = tr.prob_sum / max(tr.frames, 1)
        reason = votes.uncertain(mean[None, :], tr.state, rate, max_flicker=st.hard_flicker,
                                 margin=st.hard_margin)
        shown = tr.state or votes.UNKNOWN
        self.res.tracks += 1
        self.tracks_by_label[shown] += 1
        self.span += span
        self.frame_changes += tr.frame_changes
        self.voted_changes += tr.voted_changes
        kept = 0
        if reason and ended.kept:
            for c in ended.kept:
                self.tables.hard_crop(self.spec, self.res, tr.id, c, reason)
            kept = len(ended.kept)
            self.res.hard_tracks += 1
            self.res.hard_crops += kept
        self.tables.track(self.spec.name, tr, shown, mean, span, rate, reason, kept)

    def _finish(self):
        res = self.res
        res.by_label = self._ordered(self.by_label)
        res.per_frame_by_label = self._ordered(self.per_frame)
        res.tracks_by_label = self._ordered(self.tracks_by_label)
        fc, vc = self.frame_changes, self.voted_changes
        res.flicker = {"per_frame": round(votes.flicker_rate([fc], [self.span]), 4),
                       "voted": round(votes.flicker_rate([vc], [self.span]), 4),
                       "track_seconds": round(self.span, 2), "per_frame_changes": fc,
                       "voted_changes": vc}
        res.video_seconds = round(res.video_seconds, 2)
        res.dropped = dict(self.dropped)
        for minute in sorted(self.minutes):
            self.tables.minute(self.spec.name, minute, self.minutes[minute],
                               len(self.minute_tracks[minute]))

    def _ordered(self, counts: Counter) -> dict[str, int]:
        return {k: int(counts.get(k, 0)) for k in [*self.classes, votes.UNKNOWN]}

    # -- the annotated video --
    def _draw(self, frame, drawn, info):
        img = annotated(frame.image, drawn, blur=self.st.blur_faces)
        if self.spec.kind == "image":
            name = unique_name(self.spec.name, ".jpg", self.names)
            import cv2

            cv2.imwrite(str(self.tmp / name), img)
            self.res.video = name
            return
        if self.writer is None:
            name = unique_name(self.spec.name, ".mp4", self.names)
            self.writer = VideoOut(self.tmp / name, output_fps(info, self.st),
                                   (img.shape[1], img.shape[0]), self.st.codec)
            self.res.video, self.res.codec = name, self.writer.codec
        self.writer.write(img)


# --- pieces (bench/detect.py times them one by one) ----------------------------------------------


def model_inputs(crops) -> np.ndarray:
    """BGR head crops -> the classifier's input, uint8 RGB ``(N, 45, 45, 3)``."""
    if not len(crops):
        return np.zeros((0, images.MODEL_SIZE, images.MODEL_SIZE, 3), np.uint8)
    return np.stack([images.to_model_input(c) for c in crops])


def classify(infer, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One call for all of a frame's heads: ``(probs (N, K), emb (N, D))``."""
    return infer(x, batch_size=max(len(x), 1))
