"""Altair charts of the pages: readable with one point or fifty, small counts still visible."""
from __future__ import annotations

from typing import Sequence

import altair as alt
import pandas as pd


def training_curves(epochs: list[dict]) -> alt.Chart:
    """Loss (left) and validation balanced accuracy (right) per epoch, with markers."""
    df = pd.DataFrame(epochs)
    base = alt.Chart(df).encode(x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d"),
                                        title="epoch"))
    losses = [c for c in ("loss", "val_loss") if c in df]
    loss = base.transform_fold(losses, as_=["series", "value"]).mark_line(point=True).encode(
        y=alt.Y("value:Q", title="loss"), color=alt.Color("series:N", title=None))
    charts = [loss.properties(height=220, title="loss")]
    if "val_balanced_accuracy" in df:
        acc = base.mark_line(point=True, color="#2e7d32").encode(
            y=alt.Y("val_balanced_accuracy:Q", title="balanced accuracy",
                    scale=alt.Scale(domain=[0, 1])),
            tooltip=["epoch", "val_balanced_accuracy"])
        charts.append(acc.properties(height=220, title="validation balanced accuracy"))
    return alt.hconcat(*charts)


def confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> alt.Chart:
    rows = [{"true": t, "predicted": p, "n": int(matrix[i][j])}
            for i, t in enumerate(classes) for j, p in enumerate(classes)]
    df = pd.DataFrame(rows)
    base = alt.Chart(df).encode(x=alt.X("predicted:N", sort=list(classes)),
                                y=alt.Y("true:N", sort=list(classes)))
    heat = base.mark_rect().encode(color=alt.Color("n:Q", scale=alt.Scale(scheme="blues"),
                                                   legend=None))
    text = base.mark_text(fontSize=14).encode(text="n:Q")
    return (heat + text).properties(width=220, height=220, title="confusion (validation)")


def over_time(df: pd.DataFrame, x: str, columns: Sequence[str], *, title: str,
              x_title: str | None = None, integer_x: bool = False) -> alt.Chart:
    """Lines with a marker on every point, so one version is a visible dot, not nothing."""
    long = df[[x, *columns]].melt(x, var_name="metric", value_name="value").dropna()
    axis = alt.Axis(format="d", tickMinStep=1) if integer_x else alt.Axis()
    kind = "Q" if integer_x else "T"
    return alt.Chart(long).mark_line(point=alt.OverlayMarkDef(size=60)).encode(
        x=alt.X(f"{x}:{kind}", axis=axis, title=x_title or x),
        y=alt.Y("value:Q", scale=alt.Scale(domain=[0, 1]), title=None),
        color=alt.Color("metric:N", title=None),
        tooltip=[x, "metric", alt.Tooltip("value:Q", format=".3f")],
    ).properties(height=260, title=title)


def counts(series: pd.Series, *, title: str, colours: dict[str, str] | None = None) -> alt.Chart:
    """Horizontal bars on a log scale with the number printed at each bar: 4 next to 4,000
    is still a bar you can see and a number you can read."""
    df = pd.DataFrame({"what": series.index.astype(str), "n": series.values.astype(int)})
    df["shown"] = df["n"].clip(lower=1)  # log scale: 0 is drawn as 1, its label still says 0
    colour = (alt.Color("what:N", legend=None, scale=alt.Scale(domain=list(colours),
                                                               range=list(colours.values())))
              if colours else alt.value("#1565c0"))
    base = alt.Chart(df).encode(y=alt.Y("what:N", sort=None, title=None))
    bars = base.mark_bar().encode(x=alt.X("shown:Q", scale=alt.Scale(type="log"),
                                          title="count (log scale)"), color=colour)
    text = base.mark_text(align="left", dx=4).encode(x="shown:Q", text=alt.Text("n:Q", format=","))
    return (bars + text).properties(height=max(80, 28 * len(df)), title=title)


def histogram(values, *, bins: int = 20, title: str, x_title: str) -> alt.Chart:
    df = pd.DataFrame({"u": values})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("u:Q", bin=alt.Bin(maxbins=bins, extent=[0, 1]), title=x_title),
        y=alt.Y("count()", title="crops"),
    ).properties(height=220, title=title)
