"""Several sources at once: one spawned worker process per source, each with its own detector,
their progress relayed to the caller's bar."""
from __future__ import annotations

from pathlib import Path

from annotator.service.workspace import Workspace
from pipelines.extract.detector import LazyDetector, NoDetector, cores
from pipelines.extract.options import SourceResult
from pipelines.extract.source import extract_source

_WORKER: dict = {}  # filled in each worker process by _worker_init


def _worker_init(root, db_url, st, threads, messages):
    _WORKER["ws"] = Workspace.open(Path(root), db_url=db_url)
    _WORKER["detector"] = LazyDetector(st, threads=threads)
    _WORKER["st"] = st
    _WORKER["messages"] = messages


def _worker_run(spec):
    messages = _WORKER["messages"]

    def progress(done, total, message="", *, stage=None, data=None):
        messages.put((done, total, message, stage))

    return extract_source(_WORKER["ws"], spec, _WORKER["st"], _WORKER["detector"], progress)


def run_parallel(ws, specs, st, workers, progress, images):
    """Each source in a worker process; results in ``specs`` order (``images.done`` per result)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # torch and OpenPifPaf's class-level config do not survive fork
    threads = max(1, cores() // workers)
    with ctx.Manager() as manager:
        messages = manager.Queue()
        with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                    initargs=(str(ws.root), ws.db_url, st, threads, messages)) as pool:
            futures = {pool.submit(_worker_run, spec): spec for spec in specs}
            results, waiting = [], set(futures)
            while waiting:
                done, waiting = cf.wait(waiting, timeout=0.25)
                _drain(messages, progress)
                for fut in done:
                    spec = futures[fut]
                    try:
                        results.append(fut.result())
                    except NoDetector:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
                    except Exception as exc:  # the worker itself died
                        results.append(SourceResult(
                            name=spec.name, uri=spec.shown_uri, kind=spec.kind, status="error",
                            error=f"{spec.name}: worker failed: {exc}"))
                    images.done(results[-1])
            _drain(messages, progress)
    order = {s.shown_uri: i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order.get(r.uri, 0))


def _drain(messages, progress):
    import queue as stdqueue

    while True:
        try:
            done, total, message, stage = messages.get_nowait()
        except stdqueue.Empty:
            return
        progress(done, total, message, stage=stage)
