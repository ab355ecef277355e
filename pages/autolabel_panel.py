"""Auto-label sections of the Models page and the Dashboard (one call each from those pages).

The Models page shows the dry run (per class: threshold, crops it would label, audited error
and bound, or why it refuses) and starts the ``autolabel`` job; the Dashboard shows human
decisions per labeled crop and the auto labels' error measured on their audit crops.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from annotator.service import autolabels
from annotator.core.errors import AnnotatorError
from pages import charts
from pipelines import autolabel


def models_section(ws, start, *, running: bool) -> None:
    """``start(kind, options)``: the page's job starter (``runner.submit`` behind it)."""
    st.subheader("Auto-label")
    try:
        rep = autolabel.run(ws, autolabel.AutolabelOptions(dry_run=True))
    except AnnotatorError as exc:
        st.caption(str(exc))
        return
    st.caption(f"max error {rep.max_error:g} (95% bound, audited on {rep.audited} random-share "
               f"labels) · would label {rep.labeled} crops ({rep.audit_crops} of them still "
               f"shown to people) · would withdraw {rep.withdrawn}")
    if rep.classes:
        table = pd.DataFrame([{
            "class": c["class"], "threshold": c["threshold"], "crops": c["crops"],
            "audited": c["audited"], "error": c["error"], "bound": c["bound"],
            "more labels needed": c["needed"] or None} for c in rep.classes])
        st.dataframe(table, hide_index=True, width="stretch")
    if rep.refused:
        st.warning(rep.refused)
    st.button("Auto-label now", key="autolabel_go", type="primary",
              disabled=running or (rep.labeled == 0 and rep.withdrawn == 0),
              on_click=start, args=("autolabel", autolabel.AutolabelOptions()))


def dashboard_section(ws) -> None:
    cost = autolabels.cost_summary(ws)
    st.subheader("Labeling cost")
    cols = st.columns(4)
    cols[0].metric("Human decisions", f"{cost['human_decisions']:,}")
    cols[1].metric("Crops labeled", f"{cost['crops_labeled']:,}")
    per = cost["human_decisions_per_labeled_crop"]
    cols[2].metric("Decisions per labeled crop", "-" if per is None else f"{per:.2f}")
    err = cost["auto_error"]
    cols[3].metric("Auto-label error (measured)",
                   "-" if err["error"] is None else f"{err['error']:.2%}",
                   help="people's labels on the audit share of auto-labeled crops; 95% interval "
                   "below")
    if err["audited"]:
        lo, hi = err["interval"]
        st.caption(f"auto labels: {err['disagreed']} of {err['audited']} audited crops relabeled "
                   f"otherwise · 95% interval {lo:.2%} – {hi:.2%}")
    left, right = st.columns(2)
    kinds = pd.Series({k: v for k, v in cost["labels_by_kind"].items() if v}, dtype=int)
    if not kinds.empty:
        left.caption("Labels by how they were decided")
        left.bar_chart(kinds.rename("labels"), height=220)
    if len(cost["over_time"]):
        right.caption("Human decisions and labels over time (cumulative, per hour)")
        right.altair_chart(charts.cumulative(cost["over_time"], y_title="cumulative"),
                           width="stretch")
