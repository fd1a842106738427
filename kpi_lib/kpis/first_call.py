"""First-call quality (kpi-definitions.md §3): first-call resolution, first-call connect rate, speed to lead."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .common import Span, business_minutes, grid_index, member, num, ratio, scope, span_items, tally, to_local_times
from .detail import finish_rows
from .facts import facts_of

if TYPE_CHECKING:  # pragma: no cover
    from .context import Context

DAY_S = 86400


def lead_calls(ctx: "Context") -> pd.DataFrame:
    """Per counted lead with calls: first call (``fa_*``), first connected call (``fc_*``),
    whether ``fc`` resolved the lead, and ``t1`` (first ``call_out`` or connected ``call_in``).

    ``fc_callback_t`` and ``fc_repeat_t`` are the first ``call_in`` and the first connected
    ``call_out`` in (``fc``, ``fc`` + window] (NaN when none), ``fc_advanced`` whether the lead
    advanced in that window: ``fc_resolved`` is true exactly when neither call exists and it did.
    """
    return facts_of(ctx).lead_calls


@span_items(renumber=False)
def speed_to_lead(ctx: "Context", span: Span) -> pd.DataFrame:
    """Leads created in the span with ``t1`` (up to the week's as_of), ``stl`` minutes and owner ``m``."""
    f = facts_of(ctx)
    created = f.leads["created_at"].to_numpy()
    w = span.locate(created)
    keep = (w >= 0) & f.leads["counted"].to_numpy()
    new = pd.DataFrame({"lead_id": f.leads["id"].to_numpy()[keep], "created_at": created[keep], "w": w[keep]},
                       copy=False)
    as_of = span.as_of[new["w"].to_numpy()]
    t1 = lead_calls(ctx)["t1"].reindex(new["lead_id"].to_numpy().astype("float64")).to_numpy()
    called = t1 <= as_of
    new["t1"] = np.where(called, t1, np.nan)
    new["called"] = called
    new["owner"] = f.owner_at(new["lead_id"], np.where(called, t1, as_of))
    new["stl"] = np.where(called, business_minutes(ctx, new["created_at"], new["t1"]), np.nan)
    new = new.loc[member(new["owner"], ctx.manager_ids)]
    return new.assign(m=new["owner"].astype("int64"))


def compute_first_call(ctx: "Context", span: Span) -> pd.DataFrame:
    """First-call quality per manager and team per week (kpi-definitions.md §3).

    ``fcr_pct`` (primary): leads whose first connected call fell in the week and was made by
    the manager, resolved by that call — nobody had to call again (no further connected call
    and no incoming call) within ``fcr_window_days`` and the lead moved forward in the funnel
    within that window — over those leads.  ``fcr_final`` is true once the
    store's last sync is at or after the end of the week plus the window.
    ``first_call_connect_pct``: share of leads whose very first call (by the manager, in the
    week) connected.  Speed to lead: for leads created in the week, business minutes to the
    first outgoing call or connected incoming call (``stl``), attributed to the lead's owner
    at that call (or at ``as_of`` when not called yet).  Deleted leads and leads outside the
    configured pipelines are excluded.
    """
    idx = grid_index(span, ctx.managers["user_id"])
    facts = lead_calls(ctx).reset_index()
    out = pd.DataFrame(index=idx)
    eligible = scope(ctx, facts, span, "fc_t", "fc_caller")  # no first connected call: in no week
    out["fcr_eligible"] = tally(idx, eligible, "nunique", "lead_id")
    out["fcr_resolved"] = tally(idx, eligible.loc[eligible["fc_resolved"].to_numpy(dtype=bool)], "nunique", "lead_id")
    out["fcr_pct"] = ratio(out["fcr_resolved"], out["fcr_eligible"], 100)
    window = timedelta(days=ctx.settings.kpi.fcr_window_days)
    synced = ctx.last_sync_at  # final once the synced data cover the window, whatever "now" is pinned to
    final = np.array([float(synced is not None and synced >= week.end + window) for week in span.weeks])
    out["fcr_final"] = final[idx.get_level_values("w")]
    first = scope(ctx, facts, span, "fa_t", "fa_caller")
    out["first_call_connect_pct"] = ratio(
        tally(idx, first.loc[first["fa_connected"].to_numpy(dtype=bool)], "nunique", "lead_id"),
        tally(idx, first, "nunique", "lead_id"), 100)
    new = speed_to_lead(ctx, span)
    called = new.loc[new["called"].to_numpy()]
    out["new_leads"] = tally(idx, new, "nunique", "lead_id")
    out["uncalled_leads"] = tally(idx, new.loc[~new["called"].to_numpy()], "nunique", "lead_id")
    out["stl_median_min"] = tally(idx, called, "median", "stl", fill=None)
    out["stl_within_5_pct"] = ratio(tally(idx, called.loc[called["stl"] <= 5], "nunique", "lead_id"),
                                    out["new_leads"], 100)
    return out


#: Why an unresolved lead failed (§10), in this order.
REASONS = ("callback", "repeat_call", "no_advance")


def detail_first_call(ctx: "Context", span: Span) -> pd.DataFrame:
    """The leads behind FCR (§10): one row per lead eligible in the span.

    Returns
    -------
    DataFrame
        ``lead_id, name, manager, manager_name, fc_at`` (the first connected call),
        ``resolved``, ``reasons`` (list, empty exactly when resolved: ``callback`` — the
        customer called in within the window, ``repeat_call`` — another connected outgoing
        call in the window, ``no_advance`` — no stage advance in the window, in that order),
        ``callback_at`` and ``repeat_call_at`` (the first such call, else NaT), ``url``.
    """
    facts = lead_calls(ctx).reset_index()
    rows = scope(ctx, facts, span, "fc_t", "fc_caller")  # no first connected call: in no week
    failed = np.stack([rows["fc_callback_t"].notna().to_numpy(), rows["fc_repeat_t"].notna().to_numpy(),
                       ~rows["fc_advanced"].to_numpy(dtype=bool)], axis=1) if len(rows) else np.zeros((0, 3), bool)
    return finish_rows(ctx, {
        "lead_id": rows["lead_id"].astype("int64").to_numpy(), "manager": rows["m"].to_numpy(),
        "fc_at": to_local_times(ctx, rows["fc_t"]), "resolved": rows["fc_resolved"].to_numpy(dtype=bool),
        "reasons": [[r for r, hit in zip(REASONS, line) if hit] for line in failed],
        "callback_at": to_local_times(ctx, rows["fc_callback_t"]),
        "repeat_call_at": to_local_times(ctx, rows["fc_repeat_t"]),
    }, ["manager", "fc_at", "lead_id"])


def detail_speed_to_lead(ctx: "Context", span: Span) -> pd.DataFrame:
    """The new leads behind speed to lead (§3): one row per lead created in the span.

    Returns
    -------
    DataFrame
        ``lead_id, name, manager, manager_name`` (the owner at ``t1``, or at as_of when
        uncalled), ``created_at``, ``t1`` (the first outgoing or connected incoming call up to
        as_of, else NaT), ``stl_min`` (business minutes to ``t1``), ``uncalled``,
        ``waited_min`` (for an uncalled lead, minutes on the clock from creation to as_of),
        ``url``.
    """
    new = speed_to_lead(ctx, span)
    as_of = span.as_of[new["w"].to_numpy()] if len(new) else np.zeros(0)
    uncalled = ~new["called"].to_numpy(dtype=bool)
    waited = np.where(uncalled, (as_of - new["created_at"].to_numpy(dtype="float64")) / 60.0, np.nan)
    return finish_rows(ctx, {
        "lead_id": new["lead_id"].astype("int64").to_numpy(), "manager": new["m"].to_numpy(),
        "created_at": to_local_times(ctx, new["created_at"]), "t1": to_local_times(ctx, new["t1"]),
        "stl_min": num(new["stl"]), "uncalled": uncalled, "waited_min": np.maximum(waited, 0.0),
    }, ["manager", "created_at", "lead_id"])
