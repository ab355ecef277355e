"""Models page (admin): retrain in the background, watch progress, promote or roll back."""
from __future__ import annotations

import streamlit as st

from annotator import jobs, labeling, team
from annotator.errors import AnnotatorError
from pages import common
from pipelines import retrain, runner, versions

ws = common.workspace()
me = common.require_admin()
state = st.session_state
KINDS = ["retrain", "score", "promote", "rollback"]


def _start(kind: str, options) -> None:
    try:
        job_id = runner.submit(ws, kind, options, started_by=me["name"])
        state.models_msg = f"started job {job_id}: {kind}"
    except AnnotatorError as exc:
        state.models_msg = str(exc)


st.title("Models")
if state.get("models_msg"):
    st.info(state.models_msg)
history = team.model_history(ws)
active = labeling.active_model(ws)
st.caption(f"active model: **{active.name}**" if active else "no active model yet")
if history.empty:
    st.caption("No model versions yet. Retrain once some crops are labeled.")
else:
    st.dataframe(history.drop(columns=["classes"]), hide_index=True)

running = any(j.active for j in jobs.list_jobs(ws, kinds=KINDS))
c1, c2, c3 = st.columns(3)
with c1:
    st.button("Retrain now", type="primary", key="retrain", on_click=_start,
              args=("retrain", retrain.RetrainOptions()),
              disabled=running, help="Build a dataset from the labels, train, evaluate, and "
              "promote the new version if it beats the active one.")
with c2:
    names = history["name"].tolist() if not history.empty else []
    version = st.selectbox("Version", names[::-1], key="promote_version",
                           disabled=not names)
    force = st.checkbox("Skip the validation gate", key="promote_force",
                        help="Promote even if it does not beat the active model on the same "
                        "validation set (or there is none yet).")
    st.button("Promote", key="promote", disabled=running or not version, on_click=_start,
              args=("promote", versions.PromoteOptions(version=str(version), force=force)))
with c3:
    st.button("Roll back", key="rollback", disabled=running or len(names) < 2,
              on_click=_start, args=("rollback", versions.RollbackOptions()),
              help="Make the previously active version active again.")

st.subheader("Jobs")
common.show_jobs(ws, kinds=KINDS)
