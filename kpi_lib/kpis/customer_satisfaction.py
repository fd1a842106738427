"""Customer satisfaction (kpi-definitions.md §1): CSAT of won deals, coverage, repeat wins, NPS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import WON, Span, grid_index, match_fields, num, ratio, tally, to_local_times
from .detail import finish_rows
from .facts import closed_in, facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context


def field_ids(ctx: "Context", ref: str | int) -> list[int]:
    """Lead custom field ids matching ``ref``: an id, or a name compared case-insensitively."""
    return match_fields(ctx.frames["lead_custom_fields"], ctx.frames["custom_field_values"], ref)


def lead_scores(ctx: "Context", ref: str | int | None, low: float, high: float) -> pd.Series:
    """Per lead id, the first valid score in ``[low, high]`` of the field ``ref`` (§9 "Scores")."""
    key = f"scores:{ref}:{low}:{high}"
    if key in ctx.cache:
        return ctx.cache[key]
    out = pd.Series(dtype="float64")
    if ref is not None:
        values = ctx.frames["custom_field_values"]
        ids = field_ids(ctx, ref)
        rows = values.loc[values["field_id"].isin(ids)]
        text = rows["value"].astype(str).str.strip().str.strip('"').str.strip().str.replace(",", ".", regex=False)
        score = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64")
        valid = (score >= low) & (score <= high)
        defs = ctx.frames["lead_custom_fields"]
        order = pd.Series(num(defs["sort"]), index=num(defs["id"])).groupby(level=0).first()
        frame = pd.DataFrame({"lead": num(rows["entity_id"]), "field": num(rows["field_id"]),
                              "pos": num(rows["position"]), "score": score})[valid]
        frame["sort"] = order.reindex(frame["field"]).to_numpy()
        frame = frame.sort_values(["lead", "sort", "field", "pos"], na_position="last")
        out = frame.drop_duplicates("lead").set_index("lead")["score"]
    ctx.cache[key] = out
    return out


def repeat_flags(ctx: "Context", won: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For won leads: whether each has a contact, and whether its main contact won earlier."""
    f = facts_of(ctx)
    main, first = f.main_contact, f.first_win
    contact = main.reindex(won["lead_id"].to_numpy()).to_numpy()
    has_contact = ~np.isnan(contact)
    earliest = first.reindex(contact).to_numpy(dtype="float64")
    return has_contact, has_contact & (earliest < won["closed_at"].to_numpy())


def compute_customer_satisfaction(ctx: "Context", span: Span) -> pd.DataFrame:
    """Customer satisfaction per manager and team per week (kpi-definitions.md §1).

    ``csat_pct`` (primary): won deals of the week whose CSAT score is 4 or 5, over won deals of
    the week with a valid 1–5 score.  A deal counts for the manager who owned it when it was
    won (``owner_at(lead, closed_at)``); deleted leads and, with ``pipelines``, leads of other
    pipelines are excluded.  ``coverage_pct`` is the share of won deals with a score;
    ``repeat_win_share_pct`` the share of won deals with a contact whose main contact had won
    an earlier deal; ``nps`` (only when ``nps_field`` is set) promoters minus detractors in %.

    Returns
    -------
    DataFrame
        Indexed by (week index, manager id string or ``team``), one column per key.
    """
    idx = grid_index(span, ctx.managers["user_id"])
    won = closed_in(ctx, span, WON)
    won["score"] = lead_scores(ctx, ctx.settings.kpi.csat_field, 1, 5).reindex(won["lead_id"].to_numpy()).to_numpy()
    responded = won.loc[won["score"].notna()]
    out = pd.DataFrame(index=idx)
    out["won"] = tally(idx, won, "nunique", "lead_id")
    out["responses"] = tally(idx, responded, "nunique", "lead_id")
    happy = tally(idx, responded.loc[responded["score"] >= 4], "nunique", "lead_id")
    out["csat_pct"] = ratio(happy, out["responses"], 100)
    out["csat_mean"] = tally(idx, responded, "mean", "score", fill=None)
    out["coverage_pct"] = ratio(out["responses"], out["won"], 100)
    has_contact, repeat = repeat_flags(ctx, won)
    with_contact = tally(idx, won.loc[has_contact], "nunique", "lead_id")
    out["repeat_win_share_pct"] = ratio(tally(idx, won.loc[repeat], "nunique", "lead_id"), with_contact, 100)
    if ctx.settings.kpi.nps_field is not None:
        won["nps"] = lead_scores(ctx, ctx.settings.kpi.nps_field, 0, 10).reindex(won["lead_id"].to_numpy()).to_numpy()
        rated = won.loc[won["nps"].notna()]
        promoters = tally(idx, rated.loc[rated["nps"] >= 9], "nunique", "lead_id")
        detractors = tally(idx, rated.loc[rated["nps"] <= 6], "nunique", "lead_id")
        out["nps"] = ratio(promoters - detractors, tally(idx, rated, "nunique", "lead_id"), 100)
    return out


def detail_customer_satisfaction(ctx: "Context", span: Span) -> pd.DataFrame:
    """The won deals behind the block (§1): one row per deal in ``won(M, W)``.

    Returns
    -------
    DataFrame
        ``lead_id, name, manager, manager_name`` (the owner at closing), ``closed_at``,
        ``price``, ``score`` (the valid CSAT score, else NaN), ``satisfied`` (score 4 or 5; NA
        without a score), ``repeat`` (the main contact won an earlier deal; NA without a
        contact), ``url``.
    """
    won = closed_in(ctx, span, WON)
    score = lead_scores(ctx, ctx.settings.kpi.csat_field, 1, 5).reindex(won["lead_id"].to_numpy()).to_numpy()
    has_contact, repeat = repeat_flags(ctx, won)
    return finish_rows(ctx, {
        "lead_id": won["lead_id"].astype("int64").to_numpy(), "manager": won["m"].to_numpy(),
        "closed_at": to_local_times(ctx, won["closed_at"]), "price": won["price"].to_numpy(dtype="float64"),
        "score": np.asarray(score, dtype="float64"),
        "satisfied": pd.array(np.where(np.isnan(score), None, score >= 4), dtype="boolean"),
        "repeat": pd.array(np.where(has_contact, repeat, None), dtype="boolean"),
    }, ["manager", "closed_at", "lead_id"])
