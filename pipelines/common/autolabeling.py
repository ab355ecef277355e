"""The auto-labeling pass: label the crops the active model is sure enough of, with an audited
error bound, after withdrawing the auto labels it no longer backs.

The statistics and the plan are :mod:`annotator.service.autolabels`; here the pass runs and
reports. Two callers: the ``autolabel`` job, and every change of the active model
(``pipelines.promote``, when ``[autolabel] after_promote``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from annotator.core.errors import InputError
from annotator.core.progress import ProgressFn, silent
from annotator.service import autolabels
from annotator.service.workspace import Workspace


@dataclass
class AutolabelReport:
    model: str | None
    max_error: float
    dry_run: bool
    audited: int  # random-share labels on crops the active model scored
    classes: list[dict] = field(default_factory=list)  # per class: threshold, crops, error, bound
    bands: list[dict] = field(default_factory=list)  # per class and confidence band
    labeled: int = 0
    audit_crops: int = 0  # of those, served to people as well
    withdrawn: int = 0
    refused: str | None = None
    measured: dict | None = None  # auto labels' error on audit crops, with its interval


def autolabel(ws: Workspace, *, max_error: float | None = None, dry_run: bool = False,
              progress: ProgressFn = silent) -> AutolabelReport:
    """One auto-labeling pass with the active model (``max_error`` None: ``[autolabel]
    max_error``; ``dry_run``: report what it would do, change nothing). InputError when no
    class has enough audit yet (after withdrawing what it must)."""
    cfg = ws.config.autolabel
    max_error = cfg.max_error if max_error is None else max_error
    if not 0 < max_error < 0.5:
        raise InputError(f"--max-error must be between 0 and 0.5, got {max_error}")
    with ws.read_session() as s:
        p = autolabels.plan(s, ws.config.labels, max_error=max_error, root=ws.root)
        measured = autolabels.measured_error(s)
    if p.refused and not p.withdraw and not dry_run:  # one line, before any progress bar
        raise InputError(p.refusal())
    report = _report(p, dry_run, cfg.audit_share, measured)
    if not dry_run and (p.withdraw or not p.refused):
        progress(1, 2, f"labeling {sum(len(v) for v in p.to_label.values())} crops", stage="label")
        with ws.session() as s:
            report.labeled, back = autolabels.apply(s, p, audit_share=cfg.audit_share)
        report.withdrawn = len(back)
    progress(2, 2, f"{report.labeled} labeled, {report.withdrawn} withdrawn", stage="label")
    if p.refused and not dry_run:
        raise InputError(p.refusal() + (f" (withdrew {report.withdrawn} labels)"
                                        if report.withdrawn else ""))
    return report


def _report(p: autolabels.Plan, dry_run: bool, audit_share: float,
            measured: dict) -> AutolabelReport:
    r = AutolabelReport(p.model, p.max_error, dry_run, p.audited, measured=measured,
                        refused=p.refusal() if p.refused else None,
                        withdrawn=len(p.withdraw) if dry_run else 0)
    for t in p.thresholds:
        name = p.classes[t.cls]
        crops = p.to_label.get(name, [])
        r.classes.append({
            "class": name, "threshold": t.threshold, "crops": len(crops),
            "audited": t.n, "errors": t.errors,
            "error": None if t.error is None else round(t.error, 5),
            "bound": round(t.bound, 5), "needed": t.needed})
    r.bands = [{"class": p.classes[b.cls], "from": b.lo, "to": b.hi, "audited": b.n,
                "errors": b.errors, "bound": round(b.bound, 5)} for b in p.bands]
    if dry_run:
        r.labeled = sum(len(v) for v in p.to_label.values())
    r.audit_crops = sum(autolabels.is_audit(c, audit_share)
                        for v in p.to_label.values() for c, _ in v)
    return r


def after_promote(ws: Workspace, progress: ProgressFn = silent) -> dict | None:
    """What a promotion runs when ``[autolabel] after_promote``: the report, or the refusal
    (a promotion never fails because auto-labeling may not run yet)."""
    if not ws.config.autolabel.after_promote:
        return None
    from dataclasses import asdict

    try:
        return asdict(autolabel(ws, progress=progress))
    except InputError as e:
        return {"refused": str(e)}
