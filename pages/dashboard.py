"""Dashboard: queue counts, team pace, agreement, and how the model improves with labels."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from annotator import team
from pages import common

ws = common.workspace()
me = common.require_user()

st.title("Dashboard")
stats = team.stats(ws)
crops = stats["crops"]
cols = st.columns(5)
cols[0].metric("Crops", crops["total"])
cols[1].metric("Labeled", crops["labeled"])
cols[2].metric("To label", crops["unlabeled"])
cols[3].metric("Not a face", crops["not_a_face"])
cols[4].metric("Annotators", stats["annotators"])

left, right = st.columns(2)
with left:
    st.subheader("Crops by status")
    st.bar_chart(pd.Series({k: v for k, v in crops.items() if k != "total"}, name="crops"))
with right:
    st.subheader("Labels by value")
    st.bar_chart(pd.Series(stats["labels"], name="labels", dtype=float))

st.subheader("Labels per annotator per hour (last 48 h)")
per_hour = team.labels_per_hour(ws)
if per_hour.empty:
    st.caption("no labels yet")
else:
    st.bar_chart(per_hour)

st.subheader("Inter-annotator agreement (Cohen's kappa)")
kappa = team.agreement(ws)
if kappa.empty:
    st.caption("No crop has two votes yet: set sampling.double_annotation in config.toml "
               "(e.g. 0.05) to send a share of crops to two annotators.")
else:
    st.dataframe(kappa.style.format({"agree": "{:.1%}", "kappa": "{:.3f}"}), hide_index=True)

models = team.model_history(ws)
st.subheader("Model versions")
if models.empty:
    st.caption("no model trained yet")
else:
    metric_cols = [c for c in models.columns
                   if c not in ("name", "created_at", "promoted_at", "active", "classes", "labels")
                   and pd.api.types.is_numeric_dtype(models[c])]
    st.dataframe(models.drop(columns=["classes"]), hide_index=True)
    # Scores in [0, 1] (accuracy, balanced accuracy, ROC AUC, ECE); counts like n_val are not.
    val_cols = [c for c in metric_cols if not c.startswith("n_") and "epoch" not in c
                and models[c].dropna().between(0, 1).all()]
    if val_cols:
        st.line_chart(models.set_index("created_at")[val_cols])
    bacc = next((c for c in metric_cols if "balanced" in c.lower()), None)
    if bacc and models["labels"].notna().any():
        st.caption(f"{bacc} vs number of labels")
        st.line_chart(models.dropna(subset=["labels"]).sort_values("labels")
                      .set_index("labels")[[bacc]])

st.subheader("Uncertainty of the queue")
u = team.queue_uncertainty(ws)
if u.size == 0 or not np.any(u):
    st.caption("no model scores on the queue yet (cold start: diverse + random sampling)")
else:
    counts, edges = np.histogram(u, bins=20, range=(0.0, 1.0))
    st.bar_chart(pd.Series(counts, index=[f"{e:.2f}" for e in edges[:-1]], name="crops"))
