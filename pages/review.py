"""Review page: crops annotators disagree on, and labels the active model confidently contradicts."""
from __future__ import annotations

import streamlit as st

from annotator.data import trail
from annotator.service import crop_cards, review
from annotator.core.config import NOT_A_FACE
from annotator.core.errors import AnnotatorError
from pages import common

ws = common.workspace()
me = common.require_user()
state = st.session_state
admin = me["role"] == "admin"
CHOICES = [*ws.config.labels, NOT_A_FACE]



def show_rows(rows, section: str, describe) -> None:
    if rows.empty:
        st.caption("nothing to review here")
        return
    by_id = {c.crop_id: c for c in crop_cards.cards(ws, [(int(i), None) for i in rows["crop_id"]])}
    trail.record_shown(ws, st.session_state, f"review_{section}", me["name"], "review", by_id)
    for r in rows.itertuples(index=False):
        card = by_id.get(int(r.crop_id))
        if card is None:
            continue
        img, text, buttons = st.columns([1, 3, 3])
        with img:
            common.show_crop(card, size=96, pixelated=True)
        text.markdown(describe(r, card))
        cols = buttons.columns(len(CHOICES))
        for col, value in zip(cols, CHOICES):
            col.button(value, key=f"{section}_{r.crop_id}_{value}", on_click=common.relabel,
                       args=(int(r.crop_id), value), kwargs={"message_key": "review_msg"},
                       width="stretch")


st.title("Review")
if state.get("review_msg"):
    st.info(state.review_msg)
if not admin:
    st.caption("You see the crops you labeled; admins see everyone's.")
limit = st.slider("Rows per list", 5, 50, 15, 5)

st.subheader("Annotators disagree")
try:
    dis = review.disagreements(ws, annotator_id=None if admin else me["id"], limit=limit)
    show_rows(dis, "dis", lambda r, c: f"crop #{r.crop_id}  \n{r.votes}")

    st.subheader("The model contradicts the label")
    threshold = st.slider("Model confidence at least", 0.5, 0.99, 0.9, 0.01)
    con = review.contradictions(ws, threshold=threshold, annotator=None if admin else me["name"],
                                  limit=limit)
    show_rows(con, "con", lambda r, c: (
        f"crop #{r.crop_id}  \nlabel **{r.label}** by {r.annotators}  \n"
        f"model says **{r.guess}** ({r.confidence:.0%}); p(label) = {r.self_confidence:.1%}"))
    if crop_cards.active_model(ws) is None:
        st.caption("No active model yet: train one on the Models page.")
except AnnotatorError as exc:
    st.error(str(exc))
