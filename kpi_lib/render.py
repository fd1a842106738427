"""The weekly run's pages and files: HTML of an executed notebook (no code), error pages,
email charts, ``summary.json`` and the index pages.

Every page is rendered through Jinja2 with autoescaping and inlines its stylesheet and
images, so it opens from disk or as an email attachment without loading anything else.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import asdict
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import explain, i18n
from .kpis import manager_label
from .config import Settings
from .files import write_atomic
from .kpis.registry import BLOCKS, BY_NAME, NOTEBOOKS
from .templating import TEMPLATES, render

if TYPE_CHECKING:  # pragma: no cover
    from .report import WeekRun
    from .weekdata import WeekData

#: The KPI contract, published beside the reports' index so that every method section can link to it.
DEFINITIONS = Path(__file__).resolve().parents[1] / "docs" / "kpi-definitions.md"
DEFINITIONS_PAGE = "kpi-definitions.html"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CHART = re.compile(r'<img data-kpi-chart="(?P<block>[a-z_]+)" src="data:image/png;base64,(?P<data>[A-Za-z0-9+/=]+)"')


@lru_cache(maxsize=2)
def html_exporter(lang: str):
    """One nbconvert exporter per language: outputs only, the report template (compiled once)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", template_file="nbconvert_report.html.j2",
                        extra_template_paths=[str(TEMPLATES)], exclude_input=True, exclude_input_prompt=True,
                        exclude_output_prompt=True, exclude_anchor_links=True, language_code=lang)


def render_notebook_html(nb, lang: str) -> str:
    """The executed notebook as an HTML page for management: outputs only, no stderr, and
    the run id of ``nb.metadata.kpi_report`` in a ``kpi-report-run`` meta tag.

    Streams on stderr are dropped from ``nb`` itself (the notebook file is already written).
    """
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            cell["outputs"] = [o for o in cell.get("outputs", [])
                               if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    body, _ = html_exporter(lang).from_notebook_node(nb)
    run_id = html.escape(str(nb.metadata.get("kpi_report", {}).get("run_id", "")))
    return body.replace("<head>", f'<head>\n<meta name="kpi-report-run" content="{run_id}">', 1)


def render_error_page(nb, title: str, message: str, lang: str, notebook: str, run_id: str) -> str:
    """A page that shows why a notebook failed: the error, the failing step and the traceback."""
    source, trace = "", ""
    for cell in nb.cells:
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if errors or cell.get("metadata", {}).get("papermill", {}).get("exception"):
            source = cell.get("source", "")
            trace = "\n".join(_ANSI.sub("", line) for e in errors for line in e.get("traceback", []))
            break
    t = lambda key, **kw: i18n.text(key, lang, **kw)  # noqa: E731
    return render("report_failed.html.j2", lang=lang, run_id=run_id, title=t("failed.title", title=title),
                  lead=t("failed.lead", week=nb.metadata.get("papermill", {}).get("parameters", {}).get("week", "")),
                  labels={"cell": t("failed.cell"), "error": t("failed.error")}, message=message, source=source,
                  trace=trace, notebook_text=t("failed.notebook", path=notebook), notebook=notebook,
                  back=t("report.back"))


def save_team_chart(nb, folder: Path, lang: str) -> dict[str, str] | None:
    """Write the team trend chart that the notebook's headline shows to ``charts/<block>.png``."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            match = _CHART.search(output.get("data", {}).get("text/html", "") if "data" in output else "")
            if match is None:
                continue
            block = match["block"]
            if block not in BY_NAME:
                return None
            (folder / "charts").mkdir(exist_ok=True)
            (folder / "charts" / f"{block}.png").write_bytes(base64.b64decode(match["data"]))
            title = f"{i18n.block_title(block, lang)}: {i18n.label(BY_NAME[block].primary, lang)}"
            return {"file": f"charts/{block}.png", "title": title}
    return None


def team_target(data: "WeekData", block: str, key: str) -> float | None:
    table = data.targets
    rows = table[(table["block"] == block) & (table["key"] == key) & table["manager"].isna()]
    value = rows["target"].iloc[0] if len(rows) else None
    return None if i18n.is_missing(value) else float(value)


def scorecard(data: "WeekData", lang: str, pages: dict[str, str] | None = None) -> dict[str, Any]:
    """Managers × the six primary figures: ``{"columns": [...], "rows": [...], "drivers": [...]}`` (summary.json).

    Each cell has the value, whether it met its target, ``n``, and the change against last week
    (arrow and class by :func:`kpi_lib.explain.change_arrow`); ``drivers`` holds one sentence
    per figure on why the team figure moved.  ``pages`` maps a block to its report page.
    """
    currency = data.account.get("currency") or "RUB"
    table = data.targets
    pages = pages or {}
    moves = getattr(data, "moves", None) or {}
    columns, rows = [], []
    for block in BLOCKS:
        key = block.primary
        columns.append({"block": block.name, "key": key, "label": i18n.label(key, lang), "direction": block.direction,
                        "target": team_target(data, block.name, key), "href": pages.get(block.name)})
    names = data.names(i18n.text("team", lang))
    for manager in [str(int(u)) for u in data.managers["user_id"]] + ["team"]:
        cells = []
        for col in columns:
            match = table[(table["block"] == col["block"]) & (table["key"] == col["key"])
                          & (table["manager"].map(manager_label) == manager)]
            value = match["value"].iloc[0] if len(match) else None
            met = match["met"].iloc[0] if len(match) else None
            value = None if i18n.is_missing(value) else float(value)
            cell = {"value": value, "display": i18n.format_value(col["key"], value, lang, currency),
                    "met": None if i18n.is_missing(met) else bool(met)}
            cells.append(cell | _move_cell(moves.get(col["block"]), manager, col, value, lang, currency))
        rows.append({"manager": manager, "name": names.get(manager, manager), "cells": cells})
    drivers = [{"block": col["block"], "key": col["key"], "label": col["label"], "href": col["href"],
                "sentence": explain.describe_move(moves[col["block"]], col["block"], names, lang, currency)}
               for col in columns if col["block"] in moves]
    return {"columns": columns, "rows": rows, "drivers": drivers}


def _move_cell(record: dict | None, manager: str, col: dict, value: float | None, lang: str,
               currency: str) -> dict[str, Any]:
    """The previous week's figure, the change (number, arrow, class) and n of one scorecard cell."""
    if record is None:
        return {"previous": None, "change": None, "change_display": "", "change_class": "none", "n": None}
    if manager == "team":
        previous, n = record["previous"], record["n"]
    else:
        row = next((m for m in record["managers"] if str(m["manager"]) == manager), {})
        previous, n = row.get("previous_rate"), row.get("n")
    arrow, css = explain.change_arrow(col["key"], value, previous, col["direction"])
    change = None if value is None or previous is None else value - previous
    shown = arrow if change is None else f"{arrow} {explain.format_change(col['key'], change, lang, currency)}"
    return {"previous": previous, "change": change, "change_display": shown, "change_class": css,
            "n": None if n is None else int(n)}


def summary_notebooks(run: "WeekRun") -> list[dict[str, Any]]:
    """The state of every report of a run, as ``summary.json`` lists it."""
    return [{k: v for k, v in asdict(nb).items() if k in ("name", "title", "html", "ok", "error")}
            for nb in run.notebooks]


def load_summary(folder: Path) -> dict[str, Any] | None:
    """A week folder's ``summary.json``, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_summary(folder: Path, run: "WeekRun", data: "WeekData | None", settings: Settings,
                  charts: list[dict[str, str]], generated: datetime) -> dict[str, Any]:
    """``summary.json``: the contract with the email (see docs and kpi_lib.mail)."""
    pages = {NOTEBOOKS[nb.name]: nb.html for nb in run.notebooks if nb.ok and nb.name in NOTEBOOKS}
    card = scorecard(data, settings.lang, pages) if data is not None else {"columns": [], "rows": [], "drivers": []}
    team = next((r for r in card["rows"] if r["manager"] == "team"), {"cells": []})
    with_target = [(c, col) for c, col in zip(team["cells"], card["columns"]) if col["target"] is not None]
    tz = data.week.tz if data is not None else None
    summary = {
        "week": run.week,
        "run_id": run.run_id,
        "generated_at": (generated.astimezone(tz) if tz else generated).isoformat(timespec="seconds"),
        "last_sync_at": data.last_sync_at.isoformat(timespec="seconds") if data and data.last_sync_at else None,
        "lang": settings.lang,
        "currency": (data.account.get("currency") if data else None) or "RUB",
        "account": {"name": (data.account.get("name") if data else None),
                    "subdomain": (data.account.get("subdomain") if data else None)},
        "ok": run.ok,
        "notebooks": summary_notebooks(run),
        "scorecard": card,
        "targets_met": sum(1 for c, _ in with_target if c["met"] is True),
        "targets_total": len(with_target),
        "charts": charts,
        "cards": [{"manager": c.manager, "html": c.html, "data": c.data, "ok": c.ok, "error": c.error,
                   "previous": c.previous}
                  for c in run.cards],
    }
    if run.error:
        summary["error"] = run.error
    write_atomic(folder / "summary.json", json.dumps(summary, ensure_ascii=False, indent=1))
    return summary


def explain_target(col: dict[str, Any], lang: str, currency: str = "RUB") -> str:
    """``target ≥ 80.0%`` for a scorecard column ("no target" without one)."""
    if col.get("target") is None:
        return i18n.text("status.no_target", lang)
    sign = "≥" if col.get("direction", ">=") == ">=" else "≤"
    return f"{i18n.text('col.target', lang)} {sign} {i18n.format_value(col['key'], col['target'], lang, currency)}"


def card_links(folder: Path, rows: list[dict[str, Any]], run: "WeekRun") -> dict[str, str]:
    """Each scorecard manager's card page: the good (or kept) one in the week folder, else the
    error page of this run's card."""
    pages = {c.manager: c.html for c in run.cards}
    links = {}
    for row in rows:
        good = f"managers/{row['manager']}.html"
        if (folder / good).is_file():
            links[row["manager"]] = good
        elif row["manager"] in pages:
            links[row["manager"]] = pages[row["manager"]]
    return links


def write_index(folder: Path, run: "WeekRun", data: "WeekData | None", settings: Settings,
                generated: datetime) -> None:
    """The week's ``index.html``: scorecard, links to every report, freshness and failures."""
    lang = settings.lang
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    t = lambda key, **kw: i18n.text(key, lang, **kw)  # noqa: E731
    tz = data.week.tz if data is not None else None
    currency = (data.account.get("currency") if data is not None else None) or "RUB"
    freshness = t("index.freshness", at=i18n.format_datetime(data.last_sync_at if data else None, lang, tz),
                  as_of=i18n.format_datetime(data.as_of, lang, tz) if data else t("no_data"),
                  generated=i18n.format_datetime(generated, lang, tz))
    page = render("index_week.html.j2", lang=lang, run_id=run.run_id, title=t("index.title", week=run.week),
                  week=i18n.format_week(data.week, lang) if data else run.week,
                  account=summary["account"]["name"] or "", freshness=freshness, card=summary["scorecard"],
                  targets=t("index.targets_met", met=summary["targets_met"], total=summary["targets_total"]),
                  notebooks=run.notebooks, cards={c.manager: c for c in run.cards},
                  error=t("index.no_scorecard", error=run.error) if run.error else None,
                  card_links=card_links(folder, summary["scorecard"]["rows"], run),
                  targets_text={col["block"]: explain_target(col, lang, currency) for col in summary["scorecard"]["columns"]},
                  stale=t("index.stale") if data is not None and data.last_sync_at is not None
                  and not data.current and data.last_sync_at < data.week.end else None,
                  inactive=set() if data is None else {str(int(u)) for u, active in
                                                       zip(data.managers["user_id"], data.managers["active"])
                                                       if not active},
                  labels={k: t(f"index.{k}") for k in ("scorecard", "reports", "notebooks", "failed", "ok",
                                                         "failures", "previous_kept", "previous", "error_page",
                                                         "legend", "all_weeks", "drivers", "cards", "card_failed")}
                  | {"manager": t("col.manager"), "inactive": t("inactive"), "arrow_rule": t("managers.arrow_rule"),
                     "n": t("col.n"), "open_report": t("index.open_report")})
    write_atomic(folder / "index.html", page)


def write_reports_index(out_dir: Path, lang: str, run_id: str) -> None:
    """``reports/index.html``: every week that has a summary, newest first (written by run ``run_id``)."""
    weeks = []
    for folder in sorted((p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True):
        summary = load_summary(folder)
        if summary is None:
            continue
        generated = summary.get("generated_at")
        weeks.append({"week": folder.name, "href": f"{folder.name}/index.html", "ok": bool(summary.get("ok")),
                      "generated": i18n.format_datetime(datetime.fromisoformat(generated), lang) if generated else "",
                      "met": f"{summary.get('targets_met', 0)} / {summary.get('targets_total', 0)}",
                      "account": (summary.get("account") or {}).get("name") or ""})
    t = lambda key, **kw: i18n.text(key, lang, **kw)  # noqa: E731
    page = render("index_all.html.j2", lang=lang, run_id=run_id, title=t("index.all_title"), weeks=weeks,
                  labels={"week": t("col.week"), "generated": t("col.generated"), "met": t("col.targets_met"),
                          "state": t("col.state"), "ok": t("index.ok"), "failed": t("index.failed"),
                          "account": t("report.account")})
    write_atomic(out_dir / "index.html", page)
    write_definitions_page(out_dir)


def write_definitions_page(out_dir: Path) -> None:
    """``reports/kpi-definitions.html``: the KPI contract as a page (when the docs are at hand)."""
    from markupsafe import Markup
    import mistune

    if not DEFINITIONS.is_file():
        return
    text = DEFINITIONS.read_text(encoding="utf-8")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("# ")), DEFINITIONS.name)
    body = Markup(mistune.html(text))  # the project's own document, not CRM text
    write_atomic(out_dir / DEFINITIONS_PAGE, render("definitions.html.j2", title=title, body=body))
