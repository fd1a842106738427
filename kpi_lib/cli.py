"""``kpi-report``: demo | sync | auth | kpis | detail | drivers | run | send.

Each subcommand resolves its settings once (flag, params file, environment, default) and
calls one verb of the library.  Errors of kpi_lib are printed as one line that names the
fix, with a non-zero exit code; no secret is ever printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .config import Settings, default_demo_dir, load_settings
from .errors import KpiError
from .log import configure_logging, logger, redact

if TYPE_CHECKING:  # pragma: no cover
    from .report import WeekRun


def _common(parser: argparse.ArgumentParser, params: bool = True,
            data_help: str = "folder of the account stores (default: data/ or $KPI_DATA_DIR)") -> None:
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help=data_help)
    parser.add_argument("--account", help="account store name (default: the only store in the data dir)")
    if params:
        parser.add_argument("--params", type=Path, metavar="FILE", help="params YAML file (see params/)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")


#: Where reports go without ``--out`` (kept in step with the README).
OUT_HELP = "reports folder (default: reports/ beside the data dir)"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: use e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1: use a whole number such as 4")
    return value


def _week(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--week", help="ISO week such as 2026-W47, 'last' (the last complete week; default) "
                                       "or 'current' (the week so far)")
    parser.add_argument("--as-of", dest="as_of", metavar="ISO-8601",
                        help="pin 'now' (e.g. 2026-11-23T09:00:00+03:00) for reproducible figures")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kpi-report",
        description="Weekly sales KPI reports from amoCRM (Kommo): five KPIs and a SMART task audit.",
    )
    parser.add_argument("--version", action="version", version=f"kpi-report {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="build the demo account store from a seed",
                       description="Build a realistic demo amoCRM account (26 weeks ending with the last "
                                   "complete week) and ingest it through the sync code path.")
    _common(p, params=False, data_help="folder of the demo store (default: demo/data, apart from your "
                                       "account's data/, so that its reports go to demo/reports)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument("--today", metavar="YYYY-MM-DD", help="build the history as if today were this date (YYYY-MM-DD)")
    p.set_defaults(handler=cmd_demo)

    p = sub.add_parser("sync", help="pull your amoCRM account into the store",
                       description="Incremental, resumable sync of an amoCRM account. Connection from "
                                   "AMOCRM_SUBDOMAIN/AMOCRM_DOMAIN or AMOCRM_BASE_URL; auth from AMOCRM_TOKEN "
                                   "(long-lived token) or OAuth (AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET, "
                                   "AMOCRM_REDIRECT_URI and a token file).")
    _common(p, params=False)
    p.add_argument("--full", action="store_true", help="list everything again and drop what is gone from the account")
    p.add_argument("--max-rps", type=float, help="requests per second, at most 7 (default 7 or $AMOCRM_MAX_RPS)")
    p.set_defaults(handler=cmd_sync)

    p = sub.add_parser("auth", help="exchange an OAuth authorization code for tokens",
                       description="Exchange an amoCRM authorization code (valid 20 minutes) for the first "
                                   "access/refresh token pair, saved to the token file (mode 0600). Reads "
                                   "AMOCRM_SUBDOMAIN/AMOCRM_DOMAIN or AMOCRM_BASE_URL, AMOCRM_CLIENT_ID, "
                                   "AMOCRM_CLIENT_SECRET, AMOCRM_REDIRECT_URI and AMOCRM_TOKEN_FILE (default: "
                                   "amocrm_token.json in the data dir).")
    _common(p, params=False)
    p.add_argument("--code", required=True, help="the authorization code from the integration's settings")
    p.set_defaults(handler=cmd_auth)

    p = sub.add_parser("kpis", help="compute one week's KPIs",
                       description="Compute the five KPIs and the SMART audit for one week, per manager and team.")
    _common(p)
    _week(p)
    p.add_argument("--json", action="store_true", help="print the JSON of kpi-definitions.md §8")
    p.set_defaults(handler=cmd_kpis)

    p = sub.add_parser("detail", help="list the deals, calls or tasks behind one block's figures",
                       description="The items behind one block's figures in a week (kpi-definitions.md §10): "
                                   "one row per item, with the deal's name, the manager, the amoCRM link and "
                                   "times in the report timezone. --json and --csv give the same rows.")
    _common(p)
    _week(p)
    p.add_argument("--block", required=True, metavar="BLOCK",
                   help="customer_satisfaction, cost_of_service, first_call, speed_to_lead, average_check, "
                        "productivity or smart_audit")
    p.add_argument("--manager", type=int, metavar="ID", help="only this manager's rows (a user id)")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print a JSON list of rows")
    form.add_argument("--csv", action="store_true", help="print CSV (lists joined by ';', null as empty)")
    p.set_defaults(handler=cmd_detail)

    p = sub.add_parser("drivers", help="why each figure moved since the week before",
                       description="Split the change of five team figures since the week before into each "
                                   "manager's rate and mix effects, plus 'other' (kpi-definitions.md §11).")
    _common(p)
    _week(p)
    p.add_argument("--json", action="store_true", help="print the JSON of kpi-definitions.md §11")
    p.set_defaults(handler=cmd_drivers)

    p = sub.add_parser("run", help="execute the notebooks and render the week's HTML reports",
                       description="Execute every notebook with papermill, render HTML without code with "
                                   "nbconvert and write reports/<week>/index.html.")
    _common(p)
    _week(p)
    p.add_argument("--out", type=Path, metavar="DIR", help=OUT_HELP)
    p.add_argument("--jobs", type=positive_int, metavar="N", help="notebooks executed at once (default: the core count)")
    p.add_argument("--timeout", type=positive_int, default=600, metavar="SECONDS",
                   help="seconds per notebook (default 600)")
    p.add_argument("--lang", choices=("en", "ru"), help="report language (default from params, else en)")
    p.add_argument("--email", action="store_true", help="send the reports to management afterwards")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("send", help="email a week's reports to management",
                       description="Email a week's reports (scorecard, inline charts, attachments) to the "
                                   "recipients in the params file, over SMTP_* settings.")
    _common(p)
    _week(p)
    p.add_argument("--out", type=Path, metavar="DIR", help=OUT_HELP)
    p.add_argument("--lang", choices=("en", "ru"), help="email language (default from params, else en)")
    p.add_argument("--dry-run", action="store_true", help="write the .eml into reports/<week>/ instead of sending")
    p.add_argument("--force", action="store_true", help="send even if this week was already sent")
    p.add_argument("--managers", action="store_true",
                   help="mail each manager their own card instead (address from amoCRM or email.manager_addresses)")
    p.set_defaults(handler=cmd_send)
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Flags over params file over environment over defaults."""
    return load_settings(
        getattr(args, "params", None),
        overrides={
            "data_dir": str(args.data_dir) if getattr(args, "data_dir", None) else None,
            "account": getattr(args, "account", None),
            "week": getattr(args, "week", None),
            "as_of": getattr(args, "as_of", None),
            "lang": getattr(args, "lang", None),
        },
    )


def reports_dir(args: argparse.Namespace, settings: Settings) -> Path:
    """``--out``, else ``reports/`` beside the data dir."""
    return Path(args.out) if getattr(args, "out", None) else settings.data_dir.parent / "reports"


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import build_demo
    from .kpis.history import save_account_facts

    settings = settings_from_args(args)
    data_dir = settings.data_dir if args.data_dir else default_demo_dir()
    path = build_demo(data_dir, account=settings.account or "demo", seed=args.seed, today=args.today)
    save_account_facts(data_dir, path.stem)
    print(f"demo account written to {path}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from .amocrm.sync import pull_account
    from .kpis.history import save_account_facts
    from .weekdata import prepare_week_data

    settings = settings_from_args(args)
    report = pull_account(settings, full=args.full, max_rps=args.max_rps)
    save_account_facts(settings.data_dir, report.account)
    print(report.summary())
    try:  # the store is synced: the notebooks opened next find the last week computed
        prepare_week_data(settings.data_dir, report.account)
    except KpiError as exc:
        logger.warning("the last week's figures were not prepared for the notebooks: %s", redact(str(exc)))
    return 0


def cmd_auth(args: argparse.Namespace) -> int:
    from .amocrm.auth import authorize

    path = authorize(settings_from_args(args), code=args.code)
    print(f"OAuth tokens saved to {path} (mode 0600); run 'kpi-report sync' next")
    return 0


def format_figure(value) -> str:
    """A figure for a plain-text table: integers as is, numbers to one decimal, null as 'no data'."""
    if value is None:
        return "no data"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:,.1f}" if math.isfinite(value) else "no data"


def format_kpis_text(result: dict) -> str:
    """Plain-text tables of a §8 result, one per block: managers × keys, then the team row."""
    names = {str(m["user_id"]): f"{m['name']} ({m['user_id']})" for m in result["managers"]}
    lines = [f"KPIs for {result['week']} ({result['timezone']}, as of {result['as_of']}, "
             f"currency {result['currency'] or 'not set'})"]
    for block, table in result["kpis"].items():
        rows = [(names.get(m, m), figures) for m, figures in table["by_manager"].items()] + [("team", table["team"])]
        keys = list(table["team"])
        header = ["manager"] + keys
        body = [[label] + [format_figure(figures.get(k)) for k in keys] for label, figures in rows]
        widths = [max(len(str(row[i])) for row in [header] + body) for i in range(len(header))]
        lines += ["", block.replace("_", " ").capitalize(), "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                  for row in body]
    return "\n".join(lines)


def cmd_kpis(args: argparse.Namespace) -> int:
    from .kpis import compute_kpis, load_context

    result = compute_kpis(load_context(settings_from_args(args)))
    print(json.dumps(result, ensure_ascii=False, indent=2) if args.json else format_kpis_text(result))
    return 0


def cmd_detail(args: argparse.Namespace) -> int:
    import json

    from . import kpis

    ctx = kpis.load_context(settings_from_args(args))
    rows = kpis.block_detail(ctx, args.block, manager=args.manager)
    if args.json:
        print(json.dumps(kpis.detail_records(rows), ensure_ascii=False, indent=2))
    elif args.csv:
        sys.stdout.write(kpis.detail_csv(rows))
    else:
        print(_detail_text(args.block, ctx.week.label, rows))
    return 0


def _detail_text(block: str, week: str, rows) -> str:
    """The detail rows as an aligned plain-text table (long cells cut at 40 characters)."""
    import csv
    import io

    from . import kpis

    table = list(csv.reader(io.StringIO(kpis.detail_csv(rows))))
    table = [[c if len(c) <= 40 else c[:39] + "…" for c in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    lines = [f"{block} in {week}: {len(rows)} row(s)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    return "\n".join(lines)


def format_drivers_text(drivers: dict, names: dict[str, str], week: str) -> str:
    """Plain text of a §11 result: per figure, the change and each manager's rate and mix effects, then ``other``."""
    lines = [f"Why the figures moved in {week} (kpi-definitions.md §11)"]
    for block, r in drivers.items():
        lines += ["", f"{block.replace('_', ' ').capitalize()}: {r['key']} {format_figure(r['previous'])} -> "
                      f"{format_figure(r['value'])} (change {format_figure(r['change'])})"]
        rows = [(names.get(str(m["manager"]), str(m["manager"])), m["rate_effect"], m["mix_effect"])
                for m in r["managers"]] + [("other", r["other"], None)]
        width = max(len(name) for name, _, _ in rows)
        lines.append(f"  {'manager'.ljust(width)}  {'rate effect':>12}  {'mix effect':>12}")
        lines += [f"  {name.ljust(width)}  {format_figure(rate):>12}  {'' if name == 'other' else format_figure(mix):>12}"
                  for name, rate, mix in rows]
    return "\n".join(lines)


def cmd_drivers(args: argparse.Namespace) -> int:
    from .kpis import compute_drivers, load_context

    ctx = load_context(settings_from_args(args))
    drivers = compute_drivers(ctx)
    if args.json:
        print(json.dumps(drivers, ensure_ascii=False, indent=2))
    else:
        names = {str(int(m.user_id)): f"{m.name} ({int(m.user_id)})" for m in ctx.managers.itertuples(index=False)}
        print(format_drivers_text(drivers, names, ctx.week.label))
    return 0


def print_run(run: "WeekRun", seconds: float) -> int:
    """Tell what a run did: each report, the cards, the index; the exit code (0 when every
    report and card succeeded, else 1)."""
    for nb in run.notebooks:
        state = "ok" if nb.ok else f"FAILED ({nb.error})"
        print(f"{nb.name}: {state} [{nb.seconds:.1f} s]")
    if run.cards:
        print(f"manager cards: {sum(c.ok for c in run.cards)} of {len(run.cards)} ok "
              f"[{sum(c.seconds for c in run.cards):.1f} s]")
    for card in run.cards:
        if not card.ok:
            kept = "; the week's last good card is kept" if card.previous else ""
            print(f"managers/{card.manager}: FAILED ({card.error}){kept}")
    if run.error:
        print(f"figures: FAILED ({run.error})", file=sys.stderr)
    print(f"{run.folder / 'index.html'} written in {seconds:.1f} s (run {run.run_id})")
    if not run.ok:
        failed = [nb.name for nb in run.notebooks if not nb.ok] + [f"managers/{c.manager}" for c in run.cards
                                                                    if not c.ok]
        print(f"kpi-report run: {len(failed)} report(s) failed: {', '.join(failed) or 'figures'}; "
              f"see {run.folder / 'index.html'}", file=sys.stderr)
        return 1
    return 0


def print_send(send, *args, **kwargs) -> int:
    """Call ``send`` (:func:`kpi_lib.mail.send_week` or :func:`kpi_lib.cardmail.send_cards`) and
    print what it did, also when it failed part-way; the exit code."""
    from .errors import MailError

    try:
        report = send(*args, **kwargs)
    except MailError as exc:
        for line in exc.lines:
            print(line)
        raise
    for line in report.lines:
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .report import render_week

    settings = settings_from_args(args)
    started = time.monotonic()
    run = render_week(settings, reports_dir(args, settings), jobs=args.jobs, timeout=args.timeout)
    code = print_run(run, time.monotonic() - started)
    if args.email:
        from .cardmail import send_cards
        from .mail import send_week

        # the week just built, not the week the clock names now (a run may cross Monday 00:00)
        built = dataclasses.replace(settings, week=run.week)
        if settings.email.to or not settings.email.managers:  # the head's email, unless only cards are asked
            mail_code = print_send(send_week, built, out_dir=reports_dir(args, settings), dry_run=False, force=False)
            code = code or mail_code
        if settings.email.managers:
            cards_code = print_send(send_cards, built, out_dir=reports_dir(args, settings))
            code = code or cards_code
    return code


def cmd_send(args: argparse.Namespace) -> int:
    from .mail import send_week

    settings = settings_from_args(args)
    if args.managers:
        from .cardmail import send_cards

        return print_send(send_cards, settings, out_dir=reports_dir(args, settings), dry_run=args.dry_run,
                          force=args.force)
    return print_send(send_week, settings, out_dir=reports_dir(args, settings), dry_run=args.dry_run,
                      force=args.force)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # the subcommand's own usage, not the top-level one
        subparsers = parser._subparsers._group_actions[0].choices
        subparsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    configure_logging(getattr(args, "verbose", False))
    try:
        return int(args.handler(args) or 0)
    except KpiError as exc:
        print(f"kpi-report {args.command}: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        logger.warning("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
