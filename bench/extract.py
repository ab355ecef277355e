"""Benchmark: extraction speed per stage, YuNet against MTCNN in the same run, on the shared videos.

For each video and each detector in turn (interleaved, so both see the same load on a shared
machine), the real extract job runs the video at 2 fps (whole videos by default) into that
detector's workspace, in this process, and reports per video and in total: frames/s end to end
(sampled frames / wall seconds, file hashing, probing and the detector's first load included;
also per CPU second of this process, which load on other cores barely changes) and
milliseconds per frame in each stage: decode (reading and decoding, skipped frames included),
detect, crop+store (head boxes, sharpness, tracking, PNG files), DB (commits). The total is the
time to extract all the videos at that sampling with one worker.

OpenPifPaf runs with from-scratch weights (the same compute as the pretrained checkpoint, which
cannot be downloaded here) on a shorter sampling (0.5 fps, first 4 s), since it is ~20x slower.

Before that, the decode check: for each video, the frames sampled at 2 fps read the way
``FrameReader`` reads them (``grab()`` every frame, ``retrieve()`` the sampled ones) against one
seek per sampled frame (``CAP_PROP_POS_FRAMES`` + ``read()``), both compared byte for byte with
a plain sequential ``read()`` of every frame.

Prints tables, then ONE JSON line of figures as the last line. Whole videos: ~5-8 minutes on 2
busy cores (MTCNN is most of it).

``--engine ray`` instead compares the engines on the same videos and cores, in one run: a Ray
cluster with one CPU per core is started here first (timed apart: a team's cluster is up
already), then, for each repeat, interleaved so all see the same load, ``annotator extract`` of
all the videos at once as a fresh process into a fresh workspace with ``--engine local`` (its
default one worker per core), with ``--engine ray --address <that cluster>`` and the default
range (one range per shared video: the same split as local, so the difference is Ray's
overhead: joining, shipping the code, starting workers, moving crops), and with
``--range-seconds`` short ranges (the long video split over the cores). Frames/s = sampled
frames / wall seconds of the command, Python start included for all; the median over repeats
is compared with local's.

    python -m bench.extract [--fps 2] [--max-seconds S] [--videos a.mp4,b.mp4]
                            [--detectors yunet,mtcnn,openpifpaf] [--no-decode-check]
    python -m bench.extract --engine ray [--detectors yunet] [--repeat 3] [--range-seconds 30]
    python -m bench.extract --camera-day [--clip-seconds 12] [--people-share 0.2] [--mtcnn-off]

``--camera-day`` builds a short 720p day of a fixed camera from the shared clips (empty
stretches: the clip's scene without people, sensor noise, slow light change; people in view 20%
of the time) and runs the extract job on it with motion gating off and on, YuNet then MTCNN
(MTCNN with gating on only, unless ``--mtcnn-off``): CPU-seconds of this process per hour of
footage, extrapolated to CPU-hours per 24 h, and the tracks each finds: how many of gating off's
tracks gating misses (no crop near them in time and place) and the detector's best score on each,
which tells a missed person (high) from a false face of the empty scene (low). ~4 minutes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from annotator.media import video
from annotator.service.workspace import Workspace
from pipelines import extract
from pipelines.extract.detector import cores as cpu_cores

REPO = Path(__file__).resolve().parents[1]
STAGES = ("decode", "detect", "crop_store", "db")
TARGET_X = 5.0  # yunet frames/s end to end over mtcnn's


def shared_videos() -> list[Path]:
    root = Path(os.environ.get("ANNOTATOR_SHARED_DATA") or REPO.parent / "shared" / "data")
    return sorted((root / "videos").glob("*.mp4"))


# --- decode: grab + retrieve vs seek --------------------------------------------------------


def decode_check(path: Path, fps: float, max_seconds: float | None) -> dict:
    """ms per sampled frame for grab+retrieve (FrameReader) and for a seek per sampled frame,
    and whether each gives exactly the frames of a sequential read."""
    import cv2

    spec = video.SourceSpec(str(path), "video", path.name)
    t = time.perf_counter()
    grabbed = {f.index: _digest(f.image) for f in video.FrameReader(spec, fps=fps,
                                                                     max_seconds=max_seconds)}
    grab_s = time.perf_counter() - t
    wanted = sorted(grabbed)
    cap = cv2.VideoCapture(str(path))
    t = time.perf_counter()
    sought = {}
    for i in wanted:
        cap.set(cv2.CAP_PROP_POS_FRAMES, i)
        ok, img = cap.read()
        sought[i] = _digest(img) if ok else None
    seek_s = time.perf_counter() - t
    cap.release()
    cap = cv2.VideoCapture(str(path))
    plain, i = {}, 0
    while i <= wanted[-1]:
        ok, img = cap.read()
        if not ok:
            break
        if i in grabbed:
            plain[i] = _digest(img)
        i += 1
    cap.release()
    n = len(wanted)
    return {"video": path.name, "sampled": n, "grab_ms": round(1000 * grab_s / n, 2),
            "seek_ms": round(1000 * seek_s / n, 2), "grab_exact": grabbed == plain,
            "seek_exact": sought == plain}


def _digest(img) -> str:
    return hashlib.sha1(img.tobytes()).hexdigest()


# --- extraction ---------------------------------------------------------------------------------


def bench_one(detector: str, video_path: Path, args, ws: Workspace) -> dict:
    """One video through the extract job with one detector, in this process."""
    pifpaf = detector == "openpifpaf"
    opts = extract.ExtractOptions(
        sources=[str(video_path)], detector=detector,
        fps=args.openpifpaf_fps if pifpaf else args.fps,
        max_seconds=args.openpifpaf_seconds if pifpaf else args.max_seconds,
        checkpoint="scratch:shufflenetv2k16" if pifpaf else None,
        long_edge=args.long_edge if pifpaf else None, workers=1, batch_size=1)
    t0, c0 = time.perf_counter(), time.process_time()
    rep = extract.run(ws, opts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    (r,) = rep.per_source
    return {"video": r.name, "frames": r.frames, "wall_s": wall, "cpu_s": cpu,
            "stage_s": {k: r.timings.get(k, 0.0) for k in STAGES},
            "load_s": r.timings.get("load", 0.0), "detections": r.detections,
            "tracks": r.tracks, "crops_kept": r.crops_kept,
            "usable_heads": r.crops_kept + r.dropped.get("near_duplicate", 0), "error": r.error}


def summarise(rows: list[dict]) -> dict:
    frames = sum(r["frames"] for r in rows)
    stage = {k: sum(r["stage_s"][k] for r in rows) for k in STAGES}
    work = sum(stage.values())
    wall, cpu = sum(r["wall_s"] for r in rows), sum(r["cpu_s"] for r in rows)
    usable = sum(r["usable_heads"] for r in rows)
    kept = sum(r["crops_kept"] for r in rows)
    return {
        "frames": frames,
        "seconds_all_videos": round(wall, 1),  # one worker, the detector loaded once
        "frames_per_s": round(frames / wall, 3) if wall else None,
        "frames_per_cpu_s": round(frames / cpu, 3) if cpu else None,
        "frames_per_s_stages": round(frames / work, 3) if work else None,
        "ms_per_frame": {k: round(1000 * v / max(frames, 1), 1) for k, v in stage.items()},
        "load_s": round(sum(r["load_s"] for r in rows), 1),  # building the detector
        "setup_s": round(wall - work, 1),  # loading, hashing, probing
        "detections": sum(r["detections"] for r in rows),
        "tracks": sum(r["tracks"] for r in rows),
        "crops_kept": kept,
        "usable_heads_baseline": usable,  # what the queue would get with no tracking/thinning
        "queue_reduction_x": round(usable / kept, 2) if kept else None,
        "crops_per_video": {r["video"]: r["crops_kept"] for r in rows},
        "errors": [r["error"] for r in rows if r["error"]],
    }


# --- a camera-day: motion gating off against on -----------------------------------------------

DAY_SIZE, DAY_FPS = (1280, 720), 2.0
TARGET_CPU_H_PER_DAY = 1.0  # with gating, 720p at 2 fps


def camera_day_video(path: Path, videos: list[Path], *, clip_seconds: float, people_share: float,
                     seed: int = 0) -> dict:
    """A fixed 720p camera's day in short: for each clip, an empty stretch (the clip's median
    frame, i.e. its scene without the people, with sensor noise and a slow change of light)
    then the clip itself (its first ``clip_seconds``, fitted into 720p over that background),
    so people are in view ``people_share`` of the time. Written at the 2 fps the job samples
    (decoding a 25 fps camera costs more; detection is what gating saves). Returns its facts."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), DAY_FPS, DAY_SIZE)
    W, H = DAY_SIZE
    people = empty = 0
    spans = []  # (start, end) seconds of each clip: people in view
    for v in videos:
        cap = cv2.VideoCapture(str(v))
        step = max(1, round((cap.get(cv2.CAP_PROP_FPS) or 25) / DAY_FPS))
        frames, i = [], 0
        while len(frames) < clip_seconds * DAY_FPS:
            ok, img = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(_fit(cv2, img, W, H))
            i += 1
        cap.release()
        if not frames:
            continue
        bg = np.median(np.stack(frames[:: max(1, len(frames) // 15)]), axis=0).astype(np.float32)
        n_empty = round(len(frames) * (1 - people_share) / people_share)
        for k in range(n_empty):  # light drifts by up to 20 grey levels over the stretch
            light = 20 * np.sin(np.pi * k / max(n_empty - 1, 1))
            noise = rng.normal(0, 2.0, (H, W, 1)).astype(np.float32)
            out.write(np.clip(bg + light + noise, 0, 255).astype(np.uint8))
        for f in frames:
            out.write(f)
        start = (people + empty + n_empty) / DAY_FPS
        spans.append([start, start + len(frames) / DAY_FPS])
        people, empty = people + len(frames), empty + n_empty
    out.release()
    total = people + empty
    return {"frames": total, "seconds": total / DAY_FPS, "people_share": round(people / total, 3),
            "size": list(DAY_SIZE), "fps": DAY_FPS, "clip_seconds": clip_seconds,
            "people_spans_s": spans}


def track_crops(ws: Workspace) -> list[list[tuple]]:
    """Per track, its crops as (timestamp_s, x1, y1, x2, y2, detector score)."""
    import sqlite3

    con = sqlite3.connect(ws.root / "annotator.db")
    rows = con.execute("select track_id, timestamp_s, x1, y1, x2, y2, det_score from crops").fetchall()
    con.close()
    tracks: dict = {}
    for t, *rest in rows:
        tracks.setdefault(t, []).append(tuple(rest))
    return list(tracks.values())


def tracks_only_in(a: list[list[tuple]], b: list[list[tuple]], *, seconds: float = 1.0,
                   min_iou: float = 0.2) -> list[list[tuple]]:
    """Tracks of ``a`` none of whose crops has a crop of ``b`` within ``seconds`` and overlapping
    it (IoU >= ``min_iou``): the same person, tracked a little differently, still matches."""
    from annotator.core.tiles import box_iou

    flat = [c for cs in b for c in cs]

    def seen(c) -> bool:
        near = [o[1:5] for o in flat if abs(o[0] - c[0]) <= seconds]
        return bool(near) and float(box_iou([c[1:5]], near).max()) >= min_iou

    return [cs for cs in a if not any(seen(c) for c in cs)]


def in_spans(crops: list[tuple], spans: list[list[float]]) -> bool:
    """Whether any of a track's crops (timestamp first) lies in one of the ``spans`` (start,
    end) seconds."""
    return any(a <= c[0] < b for c in crops for a, b in spans)


def _fit(cv2, img, W: int, H: int):
    """``img`` scaled to fit W x H (aspect kept), centred on black."""
    import numpy as np

    h, w = img.shape[:2]
    s = min(W / w, H / h)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((H, W, 3), np.uint8)
    y, x = (H - small.shape[0]) // 2, (W - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def camera_day(args, videos: list[Path]) -> int:
    dets = [d for d in (args.detectors or "yunet,mtcnn").split(",") if d and d != "openpifpaf"]
    figures = {"bench": "extract_camera_day", "machine": platform.machine(),
               "cores": cpu_cores(), "load_avg_start": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        day = Path(tmp) / "camera_day.mp4"
        t0 = time.perf_counter()
        figures["video"] = camera_day_video(day, videos, clip_seconds=args.clip_seconds,
                                            people_share=args.people_share)
        figures["video"]["built_s"] = round(time.perf_counter() - t0, 1)
        hours = figures["video"]["seconds"] / 3600
        print(f"camera day: {figures['video']['frames']} frames of 720p at {DAY_FPS:g} fps "
              f"({figures['video']['seconds'] / 60:.1f} min of footage, people in view "
              f"{figures['video']['people_share']:.0%}); figures per hour and per 24 h are "
              "extrapolated from it")
        header = (f"{'detector':<10}{'motion':<8}{'frames':>7}{'skipped':>8}{'pixels':>8}"
                  f"{'cpu s':>8}{'cpu s/h':>9}{'cpu h/day':>10}{'tracks':>7}{'crops':>6}")
        print(header + "\n" + "-" * len(header))
        for det in dets:
            runs, tracks_of = {}, {}
            for motion in ("off", "on"):  # mtcnn off runs the detector on every 720p frame
                if det != "yunet" and motion == "off" and not args.mtcnn_off:
                    continue
                ws = Workspace.init(Path(tmp) / f"{det}-{motion}")
                opts = extract.ExtractOptions(sources=[str(day)], detector=det, fps=DAY_FPS,
                                              workers=1, batch_size=1, motion=motion)
                c0 = time.process_time()
                rep = extract.run(ws, opts)
                cpu = time.process_time() - c0
                tracks_of[motion] = track_crops(ws)
                ws.dispose()
                r = runs[motion] = {
                    "frames": rep.frames, "frames_skipped": rep.frames_skipped,
                    "pixels_share": round(rep.pixels_detected / max(rep.pixels_total, 1), 3),
                    "cpu_s": round(cpu, 1), "cpu_s_per_hour": round(cpu / hours, 1),
                    "cpu_h_per_day": round(24 * cpu / hours / 3600, 3),
                    "tracks": rep.tracks, "crops_kept": rep.crops_kept, "errors": rep.errors}
                print(f"{det:<10}{motion:<8}{r['frames']:>7}{r['frames_skipped']:>8}"
                      f"{r['pixels_share']:>8.0%}{r['cpu_s']:>8.1f}{r['cpu_s_per_hour']:>9.0f}"
                      f"{r['cpu_h_per_day']:>10.2f}{r['tracks']:>7}{r['crops_kept']:>6}",
                      flush=True)
            if "off" in runs:
                on, off = runs["on"], runs["off"]
                runs["cpu_off_over_on_x"] = round(off["cpu_s"] / max(on["cpu_s"], 1e-9), 2)
                runs["tracks_on_over_off"] = round(on["tracks"] / max(off["tracks"], 1), 3)
                # which tracks gating misses, and how sure the detector was of them
                missed = tracks_only_in(tracks_of["off"], tracks_of["on"])
                runs["off_only_tracks"] = len(missed)
                # a track in a clip is a person (or their false face); one in an empty stretch
                # is the still scene's false face, which gating stops looking at by design
                spans = figures["video"]["people_spans_s"]
                in_view = [cs for cs in tracks_of["off"] if in_spans(cs, spans)]
                missed_in_view = [cs for cs in missed if in_spans(cs, spans)]
                runs["off_tracks_in_view"] = len(in_view)
                runs["off_only_tracks_in_view"] = len(missed_in_view)
                runs["tracks_in_view_on_over_off"] = round(
                    1 - len(missed_in_view) / max(len(in_view), 1), 3)
                runs["off_only_best_scores"] = sorted(round(max(c[5] for c in cs), 2)
                                                      for cs in missed)
                runs["on_only_tracks"] = len(tracks_only_in(tracks_of["on"], tracks_of["off"]))
            runs["target_cpu_h_per_day"] = TARGET_CPU_H_PER_DAY
            runs["target_met"] = runs["on"]["cpu_h_per_day"] <= TARGET_CPU_H_PER_DAY
            figures[det] = runs
    print()
    for det in dets:
        f = figures[det]
        ratio = (f" ({f['cpu_off_over_on_x']}x less CPU than gating off, which needs "
                 f"{f['off']['cpu_h_per_day']} h; tracks {f['tracks_on_over_off']:.1%} of "
                 f"gating off's: {f['off_only_tracks']} found only without gating, their best "
                 f"detector scores {f['off_only_best_scores']}; {f['on_only_tracks']} only with "
                 f"it; while people were in view gating found "
                 f"{f['tracks_in_view_on_over_off']:.1%} of gating off's "
                 f"{f['off_tracks_in_view']} tracks)") if "off" in f else ""
        print(f"{det}: {f['on']['cpu_h_per_day']} CPU-hours per 720p camera-day with gating"
              f"{ratio}; target <= {TARGET_CPU_H_PER_DAY:g}: "
              f"{'met' if f['target_met'] else 'NOT met'}")
    if "yunet" in figures and "mtcnn" in figures:
        figures["yunet_over_mtcnn_cpu_x"] = round(
            figures["mtcnn"]["on"]["cpu_s"] / max(figures["yunet"]["on"]["cpu_s"], 1e-9), 2)
        print(f"yunet / mtcnn CPU with gating: {figures['yunet_over_mtcnn_cpu_x']}x")
    figures["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(figures))
    return 0


# --- engines: local against ray ----------------------------------------------------------------


def engine_run(engine: str, videos: list[Path], det: str, args, root: Path, *,
               address: str | None = None, range_seconds: float | None = None) -> dict:
    """One ``annotator extract`` of all the videos as a fresh process into a fresh workspace."""
    ws = Workspace.init(root)
    ws.dispose()
    cmd = [str(Path(sys.executable).parent / "annotator"), "extract", *map(str, videos),
           "--detector", det, "--fps", str(args.fps), "-p", str(root), "--json",
           "--engine", engine]
    if args.max_seconds:
        cmd += ["--max-seconds", str(args.max_seconds)]
    if address:
        cmd += ["--address", address]
    if range_seconds:
        cmd += ["--range-seconds", str(range_seconds)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{engine} run failed: {done.stderr.strip()[-500:]}")
    rep = json.loads(done.stdout.strip().splitlines()[-1])
    return {"frames": rep["frames"], "wall_s": round(wall, 2), "fps": round(rep["frames"] / wall, 2),
            "crops_kept": rep["crops_kept"], "tracks": rep["tracks"], "errors": rep["errors"],
            "load_avg": round(os.getloadavg()[0], 2)}


def engine_bench(args, videos: list[Path]) -> int:
    import ray

    from pipelines.extract import ray_cluster

    dets = [d for d in args.detectors.split(",") if d]
    cores = cpu_cores()
    figures = {"bench": "extract_engines", "machine": platform.machine(), "cores": cores,
               "load_avg_start": [round(x, 2) for x in os.getloadavg()],
               "sampling": {"fps": args.fps, "max_seconds": args.max_seconds},
               "videos": [v.name for v in videos], "repeat": args.repeat,
               "short_range_seconds": args.range_seconds}
    t0 = time.perf_counter()
    ray_cluster.connect(ray, None)  # this process holds the cluster; the runs join it
    address = ray.get_runtime_context().gcs_address
    figures["ray_cluster_start_s"] = round(time.perf_counter() - t0, 2)
    print(f"ray cluster: {cores} CPUs, started in {figures['ray_cluster_start_s']} s "
          f"(not counted below)")
    variants = [("local", {}), ("ray", {"address": address}),
                (f"ray {args.range_seconds:g}s ranges",
                 {"address": address, "range_seconds": args.range_seconds})]
    header = f"{'detector':<10}{'engine':<18}{'run':>4}{'frames':>8}{'wall s':>8}{'fr/s':>7}{'crops':>7}{'load':>6}"
    print(header + "\n" + "-" * len(header))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for det in dets:
                runs: dict[str, list[dict]] = {name: [] for name, _ in variants}
                for i in range(args.repeat):
                    for name, kw in variants:
                        engine = "ray" if name.startswith("ray") else "local"
                        r = engine_run(engine, videos, det, args,
                                       Path(tmp) / f"{det}-{i}-{len(runs[name])}-{engine}{len(kw)}",
                                       **kw)
                        runs[name].append(r)
                        print(f"{det:<10}{name:<18}{i + 1:>4}{r['frames']:>8}{r['wall_s']:>8.1f}"
                              f"{r['fps']:>7.2f}{r['crops_kept']:>7}{r['load_avg']:>6.2f}", flush=True)
                figures[det] = _engine_summary(runs)
    finally:
        ray.shutdown()
    print()
    for det in dets:
        f = figures[det]
        for name, v in f.items():
            extra = "" if name == "local" else f", {v['vs_local_pct']:+.1f}% frames/s vs local"
            print(f"{det} {name}: median {v['fps_median']} frames/s over {v['runs']} runs "
                  f"({v['wall_s_median']} s, {v['crops_kept']} crops){extra}")
    figures["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(figures))
    return 0


def _engine_summary(runs: dict[str, list[dict]]) -> dict:
    out = {}
    local = statistics.median(r["fps"] for r in runs["local"])
    for name, rs in runs.items():
        fps = statistics.median(r["fps"] for r in rs)
        out[name] = {"runs": len(rs), "frames": rs[0]["frames"], "fps_median": round(fps, 2),
                     "fps_runs": [r["fps"] for r in rs],
                     "wall_s_median": round(statistics.median(r["wall_s"] for r in rs), 2),
                     "crops_kept": sorted({r["crops_kept"] for r in rs}),
                     "vs_local_pct": round(100 * (fps - local) / local, 1),
                     "errors": sorted({e for r in rs for e in r["errors"]})}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=2.0, help="YuNet/MTCNN: frames sampled per "
                    "second of video")
    ap.add_argument("--max-seconds", type=float, default=None,
                    help="YuNet/MTCNN: only the first S seconds of each video (default: all)")
    ap.add_argument("--openpifpaf-fps", type=float, default=0.5)
    ap.add_argument("--openpifpaf-seconds", type=float, default=4.0)
    ap.add_argument("--long-edge", type=int, default=641, help="OpenPifPaf input long edge")
    ap.add_argument("--detectors", default=None,
                    help="default yunet,mtcnn,openpifpaf (--engine ray: yunet)")
    ap.add_argument("--videos", default="", help="comma-separated names (default: all shared)")
    ap.add_argument("--no-decode-check", action="store_true")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="ray: compare --engine ray with --engine local instead (see above)")
    ap.add_argument("--repeat", type=int, default=3, help="--engine ray: runs of each engine")
    ap.add_argument("--range-seconds", type=float, default=30.0,
                    help="--engine ray: the short ranges of the third variant")
    ap.add_argument("--camera-day", action="store_true",
                    help="a 720p fixed-camera day built from the shared clips: CPU per hour of "
                    "footage with motion gating off and on (see camera_day_video)")
    ap.add_argument("--clip-seconds", type=float, default=12.0,
                    help="--camera-day: seconds of each clip (people in view)")
    ap.add_argument("--people-share", type=float, default=0.2,
                    help="--camera-day: share of the time people are in view")
    ap.add_argument("--mtcnn-off", action="store_true",
                    help="--camera-day: also run MTCNN with gating off (slow: every 720p frame)")
    args = ap.parse_args(argv)
    if args.camera_day:
        return camera_day(args, _chosen(shared_videos(), args.videos))
    if args.detectors is None:
        args.detectors = "yunet" if args.engine == "ray" else "yunet,mtcnn,openpifpaf"
    videos = shared_videos()
    if args.videos:
        wanted = args.videos.split(",")
        videos = [v for v in videos if v.name in wanted]
    if not videos:
        print("no shared videos found (set ANNOTATOR_SHARED_DATA, or check --videos)",
              file=sys.stderr)
        return 1
    if args.engine == "ray":
        return engine_bench(args, videos)
    dets = [d for d in args.detectors.split(",") if d]
    figures = {"bench": "extract", "machine": platform.machine(), "cores": cpu_cores(),
               "load_avg_start": [round(x, 2) for x in os.getloadavg()],
               "sampling": {"fps": args.fps, "max_seconds": args.max_seconds},
               "openpifpaf_sampling": {"fps": args.openpifpaf_fps,
                                       "max_seconds": args.openpifpaf_seconds,
                                       "long_edge": args.long_edge},
               "workers": 1, "videos": [v.name for v in videos]}

    if not args.no_decode_check:
        print(f"decode check: {args.fps:g} fps sampling, ms per sampled frame")
        print(f"{'video':<48}{'sampled':>8}{'grab':>8}{'exact':>7}{'seek':>8}{'exact':>7}")
        checks = []
        for v in videos:
            c = decode_check(v, args.fps, args.max_seconds)
            checks.append(c)
            print(f"{c['video']:<48}{c['sampled']:>8}{c['grab_ms']:>8.1f}{str(c['grab_exact']):>7}"
                  f"{c['seek_ms']:>8.1f}{str(c['seek_exact']):>7}", flush=True)
        figures["decode_check"] = checks
        print()

    header = (f"{'detector':<20}{'video':<48}{'frames':>7}{'fr/s':>7}{'decode':>8}{'detect':>9}"
              f"{'crop+st':>9}{'db':>7}{'dets':>6}{'tracks':>7}{'kept':>6}")
    print(header + "\n" + "-" * len(header) + "   (fr/s end to end; stages: ms per frame)")
    rows: dict[str, list[dict]] = {d: [] for d in dets}
    with tempfile.TemporaryDirectory() as tmp:
        spaces = {d: Workspace.init(Path(tmp) / d) for d in dets}
        for v in videos:
            for det in dets:
                r = bench_one(det, v, args, spaces[det])
                rows[det].append(r)
                _print_row(_label(det), r["video"], r["frames"], r["frames"] / r["wall_s"],
                           {k: 1000 * x / max(r["frames"], 1) for k, x in r["stage_s"].items()},
                           r["detections"], r["tracks"], r["crops_kept"])
                if r["error"]:
                    print(f"   error: {r['error']}", flush=True)
        for ws in spaces.values():
            ws.dispose()
    for det in dets:
        key = "openpifpaf_scratch" if det == "openpifpaf" else det
        figures[key] = f = summarise(rows[det])
        _print_row(_label(det), f"ALL ({f['seconds_all_videos']} s)", f["frames"],
                   f["frames_per_s"], f["ms_per_frame"], f["detections"], f["tracks"],
                   f["crops_kept"])
    print()
    for key in ("yunet", "mtcnn", "openpifpaf_scratch"):
        if key in figures:
            f = figures[key]
            print(f"{key}: {f['frames_per_s']} frames/s end to end ({f['frames_per_cpu_s']} per CPU "
                  f"second, {f['frames_per_s_stages']} over the stages, detector built in "
                  f"{f['load_s']} s); all videos in {f['seconds_all_videos']} s; ms/frame "
                  f"{f['ms_per_frame']}; {f['usable_heads_baseline']} heads without thinning -> "
                  f"{f['crops_kept']} crops ({f['queue_reduction_x']}x fewer)")
    if "yunet" in figures and "mtcnn" in figures:
        y, m = figures["yunet"], figures["mtcnn"]
        x = y["frames_per_s"] / m["frames_per_s"]
        figures["yunet_over_mtcnn_x"] = round(x, 2)
        figures["yunet_over_mtcnn_cpu_x"] = round(y["frames_per_cpu_s"] / m["frames_per_cpu_s"], 2)
        # per video without building the detector (it falls on whichever video comes first)
        figures["yunet_over_mtcnn_per_video_x"] = {
            a["video"]: round((b["wall_s"] - b["load_s"]) / (a["wall_s"] - a["load_s"]), 2)
            for a, b in zip(rows["yunet"], rows["mtcnn"]) if a["frames"] and b["frames"]}
        figures["yunet_over_mtcnn_detect_x"] = round(
            m["ms_per_frame"]["detect"] / max(y["ms_per_frame"]["detect"], 1e-9), 2)
        figures["target_x"] = TARGET_X
        figures["target_met"] = x >= TARGET_X
        print(f"yunet / mtcnn frames/s end to end: {x:.2f}x (target >= {TARGET_X:g}x: "
              f"{'met' if x >= TARGET_X else 'NOT met'}); per CPU second "
              f"{figures['yunet_over_mtcnn_cpu_x']}x; detection alone "
              f"{figures['yunet_over_mtcnn_detect_x']}x; per video "
              f"{figures['yunet_over_mtcnn_per_video_x']}")
    figures["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(figures))
    return 0


def _chosen(videos: list[Path], names: str) -> list[Path]:
    return [v for v in videos if v.name in names.split(",")] if names else videos


def _label(det: str) -> str:
    return det + (" (scratch)" if det == "openpifpaf" else "")


def _print_row(label, name, frames, rate, ms, detections, tracks, kept) -> None:
    print(f"{label:<20}{name:<48}{frames:>7}{rate:>7.2f}{ms['decode']:>8.1f}{ms['detect']:>9.1f}"
          f"{ms['crop_store']:>9.1f}{ms['db']:>7.1f}{detections:>6}{tracks:>7}{kept:>6}",
          flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
