"""``kpi-report kpis``: one week's KPIs as the §8 JSON or as readable tables."""

from __future__ import annotations

import json
import math

from ..config import Settings


def format_value(value) -> str:
    """A figure for a plain-text table: integers as is, numbers to one decimal, null as 'no data'."""
    if value is None:
        return "no data"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.1f}" if math.isfinite(value) else "no data"


def render_text(result: dict) -> str:
    """Plain-text tables, one per block: managers × keys, then the team row."""
    names = {str(m["user_id"]): f"{m['name']} ({m['user_id']})" for m in result["managers"]}
    lines = [f"KPIs for {result['week']} ({result['timezone']}, as of {result['as_of']}, "
             f"currency {result['currency'] or 'not set'})"]
    for block, table in result["kpis"].items():
        rows = [(names.get(m, m), figures) for m, figures in table["by_manager"].items()] + [("team", table["team"])]
        keys = list(table["team"])
        header = ["manager"] + keys
        body = [[label] + [format_value(figures.get(k)) for k in keys] for label, figures in rows]
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        lines += ["", block.replace("_", " ").capitalize(), "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                  for row in body]
    return "\n".join(lines)


def kpis_command(settings: Settings, as_json: bool) -> int:
    """Print the week's KPIs (``--json``: exactly the §8 structure); returns the exit code."""
    from . import compute_kpis, load_context

    result = compute_kpis(load_context(settings))
    print(json.dumps(result, ensure_ascii=False, indent=2) if as_json else render_text(result))
    return 0
