"""Dashboard: the queue, the team's pace and agreement, and how the model improves with labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from annotator.service import dashboard
from annotator.core.config import NOT_A_FACE, SKIP
from pages import autolabel_panel, charts, common, slices_view, widgets

ws = common.workspace()
me = common.require_user()

st.title("Dashboard")
stats = dashboard.stats(ws)
crops = stats["crops"]
cols = st.columns(5)
cols[0].metric("Crops", f"{crops['total']:,}")
cols[1].metric("Labeled", f"{crops['labeled']:,}")
cols[2].metric("To label", f"{crops['unlabeled']:,}")
cols[3].metric("Not a face", f"{crops['not_a_face']:,}")
cols[4].metric("Annotators", stats["annotators"])

colours = {v: widgets.colour_of(v, ws.config.labels) for v in [*ws.config.labels, NOT_A_FACE, SKIP]}
left, right = st.columns(2)
with left:
    by_status = pd.Series({k: v for k, v in crops.items() if k != "total"})
    st.html(charts.count_bars(by_status, title="Crops by status"))
    origin = pd.Series(stats.get("crops_by_origin") or {})
    if len(origin) > 1:
        st.html(charts.count_bars(origin, title="Crops by origin (extract / import / detect)"))
with right:
    human = pd.Series(stats["human_labels"], dtype=int)
    imported = pd.Series(stats["labels"], dtype=int).sub(human, fill_value=0).astype(int)
    table = pd.DataFrame({"by people": human, "imported": imported}).fillna(0).astype(int)
    known = {k: c for k, c in colours.items() if k in table.index}
    st.html(charts.count_bars(table["by people"], title="Labels given by people",
                              colours=known))
    st.dataframe(table.rename(columns={"by people": "By people", "imported": "Imported"}),
                 width="stretch")

autolabel_panel.dashboard_section(ws)

st.subheader("Labels per annotator per hour (last 48 h)")
per_hour = dashboard.labels_per_hour(ws)
if per_hour.empty:
    st.caption("no labels by people yet")
else:
    st.bar_chart(per_hour)

st.subheader("Inter-annotator agreement (Cohen's kappa)")
kappa = dashboard.agreement(ws)
if kappa.empty:
    st.caption("No crop has two votes yet: set sampling.double_annotation in config.toml "
               "(e.g. 0.05) to send a share of crops to two annotators.")
else:
    st.dataframe(kappa.style.format({"agree": "{:.1%}", "kappa": "{:.3f}"}), hide_index=True)

st.subheader("The model")
models = dashboard.model_history(ws)
if models.empty:
    st.caption("no model yet: train one on the Models page")
else:
    scores = [c for c in ("balanced_accuracy", "accuracy", "roc_auc") if c in models
              and models[c].notna().any()]
    if scores:
        c1, c2 = st.columns(2)
        c1.altair_chart(charts.over_time(models, "created_at", scores, title="Validation scores "
                                         "by version", x_title="trained"), width="stretch")
        by_labels = models.dropna(subset=["labels"])
        if not by_labels.empty and "balanced_accuracy" in scores:
            c2.altair_chart(charts.over_time(by_labels.sort_values("labels"), "labels",
                                             ["balanced_accuracy"], integer_x=True,
                                             title="Balanced accuracy vs labels",
                                             x_title="labels it was built from"), width="stretch")
    est = dashboard.queue_accuracy(ws)
    if est is None:
        st.caption("Accuracy on the queue: no random-share label of a scored crop yet (10% of "
                   "every batch is drawn at random to measure it).")
    else:
        st.metric(f"{est['model']}'s accuracy on the queue (random share)",
                  f"{est['accuracy']:.1%}",
                  help=f"{est['n']} randomly drawn crops, labeled after the model scored them; "
                       f"95% interval {est['low']:.1%} to {est['high']:.1%}")
        st.caption(f"95% interval {est['low']:.1%} – {est['high']:.1%} from {est['n']} random "
                   "crops")

st.subheader("Uncertainty of the queue")
scored, total = dashboard.queue_scored(ws)
if scored == 0:
    st.caption("no model has scored the queue yet (cold start: diverse + random sampling)"
               if models.empty else "the active model has not scored the queue yet: run "
               "`annotator score` (or Retrain on the Models page)")
else:
    u = dashboard.queue_uncertainty(ws)
    st.altair_chart(charts.histogram(u[np.isfinite(u)], title=f"{scored:,} of {total:,} crops "
                                     "scored by the active model", x_title="uncertainty "
                                     "(1 = a coin toss)"), width="stretch")

junk = dashboard.junk_last(ws)
if not junk["on"]:
    st.caption("Junk last is off (`[sampling] junk_last = false`): crops that look like no face "
               "are served in uncertainty order like any other.")
elif junk["held_back"]:
    check = junk["check"]
    tried = (f" Checked on the {check['labels']} random-share decisions it did not learn from: it "
             f"would hold back {check['not_a_face_held']} of their {check['not_a_face']} not-a-face "
             f"crops and {check['faces_held']} of their {check['faces']} faces."
             if check["labels"] else "")
    st.caption(f"Junk last: {junk['held_back']:,} of the {junk['unlabeled']:,} crops to label look "
               "like no face by your team's x keys (their detector score); they are served after "
               f"the rest, and the random share still draws from them.{tried}")
else:
    seen = (", ".join(f"{d}: {e['not_a_face']} x and {e['faces']} faces"
                      for d, e in junk["evidence"].items())
            or "no decided crop has a detector score yet")
    st.caption(f"Junk last learns from the team's decisions once there are {junk['min_each']} "
               f"x (not a face) and {junk['min_each']} faces per detector ({seen}); nothing is "
               "held back yet.")

slices_view.section(ws)  # where the model is worst (per slice), opens Browse on one
