"""The managers' cards: one page per manager from the real weekly run, in English and Russian,
showing nobody else's name, figures or deals, and one email per manager received by a real
SMTP server on 127.0.0.1 (aiosmtpd).

The demo account is copied and every manager renamed with markup in the name, one manager
loses their email address and the inactive manager gets a won deal in the report week.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import shutil
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

from kpi_lib.card import ManagerCard, carded_managers, ordinal
from kpi_lib.cardmail import recipient_key, send_cards
from kpi_lib.cli import print_run, print_send
from kpi_lib.config import SmtpEnv, load_settings
from kpi_lib.delivery import RetryPolicy, message_id
from kpi_lib.errors import ConfigError, MailError
from kpi_lib.report import render_week
from kpi_lib.store import Store
from kpi_lib.weekdata import build_week_data
from tests.conftest import DEMO_AS_OF
from tests.test_mail import FAST, Inbox, parts_of, serving

ROOT = Path(__file__).resolve().parent.parent
WEEK = "2026-W47"
NO_EMAIL = 10400113  # the manager whose amoCRM user has no email
INACTIVE = 10400118  # inactive in amoCRM; gets a won deal in WEEK
LINK = re.compile(r"https://demo-sales\.amocrm\.ru/(leads|contacts|companies)/detail/(\d+)")


def marked(name: str, n: int) -> str:
    """A manager's name with markup in it (and a quote and an ampersand)."""
    return f'<b>{name}</b> & "{n}"'


@pytest.fixture(scope="module")
def team_store(demo_store, tmp_path_factory):
    """The demo account with every manager renamed with markup, one without email, the inactive one with a win."""
    data = tmp_path_factory.mktemp("team-data")
    shutil.copy(demo_store / "demo.duckdb", data / "demo.duckdb")
    closed = int(datetime.fromisoformat("2026-11-19T12:00:00+03:00").timestamp())
    with Store.open(data, "demo", read_only=False) as store:
        users = store.raw_items("users")
        pipeline = int(store.frame("pipelines")["id"].iloc[0])
        with store.transaction():
            for n, user in enumerate(users):
                if not (user.get("rights") or {}).get("is_admin"):
                    user["name"] = marked(user["name"], n)
                if user["id"] == NO_EMAIL:
                    user.pop("email", None)
            store.ingest("users", users)
            store.ingest("leads", [{"id": 99100001, "name": "Inactive's deal", "price": 50000,
                                    "responsible_user_id": INACTIVE, "status_id": 142, "pipeline_id": pipeline,
                                    "created_by": INACTIVE, "created_at": closed - 86400, "updated_at": closed,
                                    "closed_at": closed}])
    return data


def settings_for(data_dir: Path, **overrides):
    return load_settings(None, env={}, overrides={"data_dir": str(data_dir), "as_of": DEMO_AS_OF, **overrides})


def card_only_notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "nb-cards"
    folder.mkdir(exist_ok=True)
    shutil.copy(ROOT / "notebooks" / "07_manager_card.ipynb", folder)
    return folder


@pytest.fixture(scope="module")
def card_runs(team_store, tmp_path_factory):
    """The weekly run with only the card notebook: English for WEEK, Russian for the current week."""
    runs = {}
    for lang, week in (("en", WEEK), ("ru", "current")):
        tmp = tmp_path_factory.mktemp(f"cards-{lang}")
        run = render_week(settings_for(team_store, lang=lang, week=week), tmp / "reports",
                          notebooks_dir=card_only_notebooks(tmp))
        runs[lang] = run
    return runs


def names_of(data) -> dict[str, str]:
    return {str(int(u)): str(n) for u, n in zip(data.managers["user_id"], data.managers["name"])}


def own_items(data, manager: str) -> set[int]:
    """Every deal, contact or company id the manager's own items point at (their leads and tasks)."""
    ids = set()
    for block in ("first_call", "speed_to_lead", "smart_audit"):
        rows = data.details[block]
        rows = rows[rows["manager"].astype("int64") == int(manager)]
        for column in ("lead_id", "entity_id"):
            ids |= {int(v) for v in rows[column].dropna()} if column in rows else set()
    if data.due is not None:
        rows = data.due[data.due["manager"].astype("int64") == int(manager)]
        ids |= {int(v) for v in rows["entity_id"].dropna()}
    return ids


@pytest.mark.slow
@pytest.mark.parametrize("lang", ["en", "ru"])
def test_every_card_shows_only_its_manager(card_runs, team_store, lang):
    from tests.browser import check_page

    run = card_runs[lang]
    assert run.ok, [(c.manager, c.error) for c in run.cards]
    data = build_week_data(settings_for(team_store, lang=lang, week=run.week))
    names = names_of(data)
    expected = carded_managers(data)
    # the inactive manager gets a card for the week of their win only
    assert expected == [m for m in names if m != str(INACTIVE) or run.week == WEEK]
    assert [c.manager for c in run.cards] == expected
    index = (run.folder / "index.html").read_text(encoding="utf-8")
    for manager in expected:
        page = run.folder / "managers" / f"{manager}.html"
        assert f'href="managers/{manager}.html"' in index  # the head's scorecard links every card
        shown = check_page(page)
        assert shown.console_errors == [] and shown.broken_images == [] and shown.dialogs == []
        assert shown.code_cells_visible == 0 and shown.external_requests == [] and shown.images == 1
        assert names[manager] in shown.text  # their own name, markup shown as text
        for other, name in names.items():
            if other != manager:
                assert name not in shown.text, (manager, other)
                assert name.split("</b>")[0][3:] not in shown.text, (manager, other)  # not even the plain name
        html = page.read_text(encoding="utf-8")
        assert "<b>" not in html.split("<body", 1)[1]  # names are escaped, never markup
        linked = {int(m[2]) for m in LINK.finditer(html)}
        assert linked and linked <= own_items(data, manager), (manager, linked - own_items(data, manager))
        nb = nbformat.read(run.folder / "notebooks" / "managers" / f"{manager}.ipynb", as_version=4)
        assert nb.metadata["papermill"]["parameters"]["manager"] == int(manager)
        card = json.loads((run.folder / "managers" / f"{manager}.json").read_text(encoding="utf-8"))
        assert card["manager"]["name"] == names[manager] and names[manager] not in json.dumps(
            {k: v for k, v in card.items() if k != "manager"}, ensure_ascii=False)


@pytest.mark.slow
def test_cards_speak_the_report_language(card_runs):
    en = (card_runs["en"].folder / "managers" / "10400111.html").read_text(encoding="utf-8")
    ru = (card_runs["ru"].folder / "managers" / "10400111.html").read_text(encoding="utf-8")
    assert "Your six figures" in en and "Your list for the coming week" in en and " of " in en
    assert "Ваши шесть показателей" in ru and "Ваш список на следующую неделю" in ru and "Your" not in ru
    assert re.search(r"\d-е из \d", ru) and re.search(r"\d(st|nd|rd|th) of \d", en)
    assert "Open tasks for today and tomorrow" not in en  # a past week has no "today"
    assert "Открытые задачи на сегодня и завтра" in ru  # the current week lists them


def test_a_card_has_six_figures_with_rank_change_and_team(demo_store):
    data = build_week_data(settings_for(demo_store, week=WEEK))
    managers = carded_managers(data)
    figures = {m: ManagerCard(data, m, "en").figure_data() for m in managers}
    for i, (key, block) in enumerate((f["key"], f["block"]) for f in figures[managers[0]]):
        team = data.result["kpis"][block]["team"][key]
        values = {m: figures[m][i]["value"] for m in managers if figures[m][i]["value"] is not None}
        for m, value in values.items():
            row = figures[m][i]
            better = sum(1 for v in values.values() if (v > value if row["direction"] == ">=" else v < value))
            assert row["rank"] == better + 1 and row["ranked"] == len(values) and row["team"] == team
            trend = data.trends
            previous = trend[(trend["block"] == block) & (trend["key"] == key) & (trend["manager"].astype(str) == m)
                             & (trend["week"] == "2026-W46")]["value"].iloc[0]
            assert row["change"] == pytest.approx(value - previous) and row["previous"] == pytest.approx(previous)
    assert [ordinal(n, "en") for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"]
    with pytest.raises(ConfigError, match="10400111"):
        ManagerCard(data, 424242, "en")


# --- the emails ---------------------------------------------------------------------------------

class PickyInbox(Inbox):
    """An inbox whose server refuses the addresses in ``refuse`` (550 at RCPT TO)."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def smtp_server():
    with serving(PickyInbox(), sender="KPI reports <kpi@example.ru>") as server:
        yield server


def copy_reports(run, tmp_path: Path) -> Path:
    out = tmp_path / "reports"
    shutil.copytree(run.folder, out / run.week)
    return out


@pytest.mark.slow
def test_each_manager_gets_their_own_card_once(card_runs, team_store, smtp_server, tmp_path, caplog, capsys):
    from tests.browser import check_page, save_email_page

    inbox, smtp = smtp_server
    out = copy_reports(card_runs["en"], tmp_path)
    data = build_week_data(settings_for(team_store, week=WEEK))
    names = names_of(data)
    with Store.open(team_store, "demo") as store:
        known = {str(u): e for u, e in zip(store.frame("users")["id"], store.frame("users")["email"]) if e}
    settings = settings_for(team_store, week=WEEK, email={
        "manager_addresses": {10400112: "marina.home@example.ru"}, "skip_managers": [10400114],
        "manager_lang": {10400115: "ru"}})
    caplog.set_level(logging.WARNING, logger="kpi_report")
    report = send_cards(settings, out, smtp=smtp, retry=FAST)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and names[str(NO_EMAIL)] in warnings[0] and str(NO_EMAIL) in warnings[0]
    assert "manager_addresses" in warnings[0]

    expected = {m: ("marina.home@example.ru" if m == "10400112" else known[m])
                for m in carded_managers(data) if m not in ("10400114", str(NO_EMAIL))}
    got = {}
    for envelope in inbox.envelopes:
        (rcpt,) = envelope.rcpt_tos
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        manager = next(m for m, a in expected.items() if a == rcpt)
        got[manager] = rcpt
        to = msg["To"].addresses[0]  # a folded header may gain a space where it was folded
        assert to.addr_spec == rcpt and to.display_name.split() == names[manager].split()
        text, html, images, attachments = parts_of(msg)
        assert len(images) == 1 and images[0].get_content()[:4] == b"\x89PNG"
        russian = manager == "10400115"
        assert msg["Subject"].startswith("Ваша неделя 2026-W47" if russian else "Your week 2026-W47")
        assert ("Ваш список на следующую неделю" if russian else "Your list for the coming week") in text
        assert [a.get_filename() for a in attachments] == ([] if russian else ["card-2026-W47.html"])
        for other, name in names.items():
            if other != manager:
                assert name not in text and name not in html and name.replace("<", "&lt;") not in html
        linked = {int(m[2]) for m in LINK.finditer(html)}
        assert linked <= own_items(data, manager)
        if manager in ("10400111", "10400115"):  # the received body, opened in Chromium
            page = save_email_page(html, images, tmp_path / f"received-{manager}")
            shown = check_page(page)
            assert shown.console_errors == [] and shown.broken_images == [] and shown.images == 1
            assert names[manager] in shown.text and shown.external_requests == []
    assert got == expected  # one email per manager, to that manager's address
    assert sorted(report.sent) == sorted(expected.values()) and report.week == WEEK
    assert report.lines == [f"{WEEK}: {len(expected)} card(s) sent to {', '.join(report.sent)}"]
    run_id = card_runs["en"].run_id
    for envelope in inbox.envelopes:  # the Message-ID is fixed by (week, run, manager): a resend is the same message
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        manager = next(m for m, a in expected.items() if a == envelope.rcpt_tos[0])
        assert msg["Message-ID"] == message_id(WEEK, run_id, recipient_key(manager), smtp.sender)
        assert msg["X-KPI-Report-Run"] == run_id
    ledger = json.loads((out / "sent.json").read_text(encoding="utf-8"))[WEEK]
    assert {e["recipient"]: (e["state"], e["to"], e["run_id"]) for e in ledger} == {
        recipient_key(m): ("sent", [a], run_id) for m, a in expected.items()}

    capsys.readouterr()
    assert print_send(send_cards, settings, out, smtp=smtp, retry=FAST) == 0  # a rerun sends nothing again
    assert len(inbox.envelopes) == len(expected) and "already sent" in capsys.readouterr().out


@pytest.mark.slow
def test_a_refused_address_is_sent_on_the_rerun_only(card_runs, team_store, smtp_server, tmp_path, capsys):
    inbox, smtp = smtp_server
    out = copy_reports(card_runs["en"], tmp_path)
    settings = settings_for(team_store, week=WEEK)
    inbox.refuse = {"manager2@demo-sales.ru"}
    with pytest.raises(MailError, match="10400112") as failure:
        print_send(send_cards, settings, out, smtp=smtp, retry=FAST)
    assert "--managers" in str(failure.value)
    first = sorted(r for e in inbox.envelopes for r in e.rcpt_tos)
    assert "manager2@demo-sales.ru" not in first and len(first) == 6  # the others went out
    told = f"{WEEK}: 6 card(s) sent to {', '.join(r for e in inbox.envelopes for r in e.rcpt_tos)}"
    assert failure.value.lines == [told] and capsys.readouterr().out == told + "\n"  # said before the error
    inbox.refuse = set()
    assert print_send(send_cards, settings, out, smtp=smtp, retry=FAST) == 0
    assert [e.rcpt_tos for e in inbox.envelopes[len(first):]] == [["manager2@demo-sales.ru"]]


@pytest.mark.slow
def test_an_unconfirmed_card_is_sent_again_as_the_same_message(card_runs, team_store, tmp_path, capsys):
    from tests.test_mail_once import Dropping, message_ids, smtp_for, start

    out = copy_reports(card_runs["en"], tmp_path)
    settings = settings_for(team_store, week=WEEK)
    dropping = Dropping(drops=1)  # the first card's DATA goes out and the reply never comes
    server = start(dropping)
    try:
        with pytest.raises(MailError, match="unconfirmed") as caught:
            print_send(send_cards, settings, out, smtp=smtp_for(server), retry=RetryPolicy(attempts=1, base_delay=0.01))
        assert caught.value.unclear and len(dropping.envelopes) == 1  # the command stopped at the unclear one
        (first,) = json.loads((out / "sent.json").read_text(encoding="utf-8"))[WEEK]
        assert first["state"] == "started" and first["recipient"].startswith("manager/")
        assert print_send(send_cards, settings, out, smtp=smtp_for(server), retry=FAST) == 0
    finally:
        server.stop()
    ids = message_ids(dropping)
    assert ids.count(first["message_id"]) == 2 and len(set(ids)) == len(ids) - 1  # the same message, once more
    ledger = json.loads((out / "sent.json").read_text(encoding="utf-8"))[WEEK]
    assert all(e["state"] == "sent" for e in ledger) and len({e["recipient"] for e in ledger}) == len(ledger)
    again = next(e for e in ledger if e["recipient"] == first["recipient"])
    assert again["message_id"] == first["message_id"] and again["attempts"] == 2


def test_the_cards_are_published_with_the_week_and_name_its_run(card_runs):
    run = card_runs["en"]
    assert run.folder.is_symlink() and (run.folder / "managers").resolve().parent == run.folder.resolve()
    assert run.folder.resolve().name == run.run_id
    for card in run.cards:
        page = (run.folder / card.html).read_text(encoding="utf-8")
        assert f'<meta name="kpi-report-run" content="{run.run_id}">' in page
    summary = json.loads((run.folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["run_id"] == run.run_id and {c["manager"] for c in summary["cards"]} == {
        c.manager for c in run.cards}


@pytest.mark.slow
def test_dry_run_writes_one_eml_per_manager(card_runs, team_store, tmp_path):
    out = copy_reports(card_runs["ru"], tmp_path)
    week = card_runs["ru"].week
    assert print_send(send_cards, settings_for(team_store, week=week, lang="ru"), out, dry_run=True,
                              smtp=SmtpEnv(host=None, port=25)) == 0
    emls = sorted((out / week / "managers").glob("*.eml"))
    assert [p.stem for p in emls] == sorted(c.manager for c in card_runs["ru"].cards if int(c.manager) != NO_EMAIL)
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=email.policy.default)
    assert msg["Subject"].startswith(f"Ваша неделя {week}") and not (out / "sent.json").exists()
    text, _, _, _ = parts_of(msg)
    assert "Открытые задачи на сегодня и завтра" in text


def test_card_settings_are_checked():
    for bad, fix in (({"managers": "yes"}, "true or false"), ({"manager_addresses": {"x": "a@b.ru"}}, "user id"),
                     ({"manager_addresses": {1: "nobody"}}, "email address"), ({"manager_lang": {1: "de"}}, "en, ru"),
                     ({"skip_managers": "1"}, "list")):
        with pytest.raises(ConfigError, match=fix):
            load_settings(None, env={}, overrides={"email": bad})
    email_settings = load_settings(None, env={}, overrides={"email": {
        "managers": True, "manager_addresses": {"10400111": "a@b.ru"}, "manager_lang": {10400111: "ru"}}}).email
    assert email_settings.managers and email_settings.manager_addresses == {10400111: "a@b.ru"}
    assert email_settings.manager_lang == {10400111: "ru"}


@pytest.mark.slow
def test_a_failed_card_or_a_dead_kernel_spoils_no_other_card(demo_store, tmp_path):
    from kpi_lib.cardrun import split_cards

    folder = card_only_notebooks(tmp_path)
    nb = nbformat.read(folder / "07_manager_card.ipynb", as_version=4)
    managers = carded_managers(build_week_data(settings_for(demo_store, week=WEEK)))
    group = split_cards(managers, 2)[0]  # one kernel's share: a failure, then a dead kernel, then the rest
    failing, dying = int(group[0]), int(group[1])
    nb.cells.append(nbformat.v4.new_code_cell(
        f"import os\nassert manager != {failing}, 'boom <b>card</b>'\nmanager == {dying} and os._exit(3)"))
    nbformat.write(nb, folder / "07_manager_card.ipynb")
    run = render_week(settings_for(demo_store, week=WEEK), tmp_path / "reports", notebooks_dir=folder, jobs=2)
    outcome = {c.manager: c.ok for c in run.cards}
    assert outcome == {m: int(m) not in (failing, dying) for m in managers} and not run.ok
    page = (run.folder / "managers" / f"{failing}.failed.html").read_text(encoding="utf-8")
    assert "boom &lt;b&gt;card&lt;/b&gt;" in page and "AssertionError" in page
    assert (run.folder / "notebooks" / "managers" / f"{failing}.failed.ipynb").exists()
    assert (run.folder / "managers" / f"{dying}.failed.html").exists()
    for m in group[2:]:
        assert "Your six figures" in (run.folder / "managers" / f"{m}.html").read_text(encoding="utf-8")
    index = (run.folder / "index.html").read_text(encoding="utf-8")
    assert f'href="managers/{failing}.failed.html"' in index and index.count("card failed") == 2


@pytest.mark.slow
def test_a_failed_card_keeps_the_weeks_last_good_card(card_runs, team_store, tmp_path, capsys, caplog):
    good = card_runs["en"]
    out = copy_reports(good, tmp_path)
    failing, fine = good.cards[0], good.cards[1]
    kept = (good.folder / "managers" / f"{failing.manager}.html").read_bytes()
    kept_nb = (good.folder / "notebooks" / "managers" / f"{failing.manager}.ipynb").read_bytes()
    assert f'content="{good.run_id}"'.encode() in kept
    folder = card_only_notebooks(tmp_path)
    nb = nbformat.read(folder / "07_manager_card.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"assert manager != {failing.manager}, 'card broke'"))
    nbformat.write(nb, folder / "07_manager_card.ipynb")
    caplog.set_level(logging.WARNING, logger="kpi_report")
    run = render_week(settings_for(team_store, week=WEEK), out, notebooks_dir=folder)
    code = print_run(run, 0.0)
    printed = capsys.readouterr()

    assert code == 1 and run.run_id != good.run_id
    card = next(c for c in run.cards if c.manager == failing.manager)
    assert not card.ok and card.html == f"managers/{failing.manager}.failed.html"
    assert card.previous == f"managers/{failing.manager}.html"
    week = out / WEEK
    assert week.resolve().name == run.run_id  # the new generation, with the old card in it
    assert (week / card.previous).read_bytes() == kept  # the last good page, never the broken one
    assert (week / "notebooks" / "managers" / f"{failing.manager}.ipynb").read_bytes() == kept_nb
    assert "card broke" in (week / card.html).read_text(encoding="utf-8")
    other = (week / "managers" / f"{fine.manager}.html").read_text(encoding="utf-8")
    assert f'content="{run.run_id}"' in other  # the other cards are this run's
    assert f"managers/{failing.manager}: FAILED (AssertionError: card broke); the week's last good card is kept" \
        in printed.out
    assert f"managers/{failing.manager}" in printed.err
    assert any(failing.name in r.getMessage() and "last good card is kept" in r.getMessage() for r in caplog.records)
    summary = json.loads((week / "summary.json").read_text(encoding="utf-8"))
    entry = next(c for c in summary["cards"] if c["manager"] == failing.manager)
    assert entry["ok"] is False and entry["previous"] == card.previous
    index = (week / "index.html").read_text(encoding="utf-8")
    assert f'href="{card.html}"' in index and index.count(f'href="{card.previous}"') == 2  # scorecard and list
    assert "the previous good version is kept" in index

    # the same card failing again keeps that same page, carried once more
    again = render_week(settings_for(team_store, week=WEEK), out, notebooks_dir=folder)
    assert (week / card.previous).read_bytes() == kept and again.run_id != run.run_id


def test_cards_are_kept_when_the_weeks_figures_fail(card_runs, team_store, tmp_path, monkeypatch, caplog):
    good = card_runs["en"]
    out = copy_reports(good, tmp_path)
    pages = {c.manager: (good.folder / "managers" / f"{c.manager}.html").read_bytes() for c in good.cards}

    def unreadable(*args, **kwargs):
        raise RuntimeError("the store cannot be read")

    monkeypatch.setattr("kpi_lib.report.build_week_data", unreadable)
    caplog.set_level(logging.WARNING, logger="kpi_report")
    run = render_week(settings_for(team_store, week=WEEK), out, notebooks_dir=card_only_notebooks(tmp_path))

    week = out / WEEK
    assert "the store cannot be read" in run.error and run.cards == []
    assert week.resolve().name == run.run_id  # a new generation, with every last good card in it
    assert len(pages) >= 2
    for manager, page in pages.items():
        assert (week / "managers" / f"{manager}.html").read_bytes() == page
    assert any(f"last good {len(pages)} card(s) are kept" in r.getMessage() for r in caplog.records)


@pytest.mark.slow
def test_the_card_notebook_opens_in_an_analysts_session(demo_store, tmp_path, monkeypatch):
    """Run as committed, as in JupyterLab (``make lab`` sets KPI_DATA_DIR), outside any run:
    the card of the first manager, computed from the store; ``manager`` picks another."""
    import nbclient

    monkeypatch.setenv("KPI_DATA_DIR", str(demo_store))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    data = build_week_data(load_settings(None, overrides={"data_dir": str(demo_store)}))
    names = names_of(data)
    first, other = carded_managers(data)[:2]
    for manager in (None, other):
        nb = nbformat.read(ROOT / "notebooks" / "07_manager_card.ipynb", as_version=4)
        if manager is not None:  # the analyst edits the parameters cell
            nb.cells[0].source = nb.cells[0].source.replace("manager = None", f"manager = {manager}")
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(tmp_path)}}).execute()
        outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
        assert [o.output_type for o in outputs] == ["execute_result"] * 4  # title, figures, trends, actions
        html = "".join(o["data"]["text/html"] for o in outputs)
        shown = manager or first
        assert f"{names[shown]}: your week" in html and "Your six figures" in html
        assert all(names[m] not in html for m in names if m != shown)
    assert not list(tmp_path.iterdir())  # nothing written beside the notebook
