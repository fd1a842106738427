"""The demo account: deterministic, shaped like real amoCRM answers, rich enough for every KPI.

The store is the session's ``demo_store`` (built once through ``Store.ingest_page``); the
page-level tests generate the same account again and compare.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tests.conftest import DEMO_AS_OF, DEMO_TODAY
from kpi_lib import demo
from kpi_lib.demo.plan import FIRST_MANAGER_ID
from kpi_lib.errors import ConfigError, StoreError
from kpi_lib.store import Store, load_frames
from tests.samples import load_sample

ROOT = Path(__file__).resolve().parents[1]
MSK = ZoneInfo("Europe/Moscow")
ORDER = ["account", "users", "pipelines", "lead_custom_fields", "leads", "contacts", "companies", "tasks",
         "lead_notes", "contact_notes", "events"]

#: A real Kommo lead with custom fields (kpi-definitions' companion amocrm-api.md §3.4).
KOMMO_LEAD = {
    "id": 5765922, "name": "Marcelo Velarde Porras Porras", "price": 0, "responsible_user_id": 10471703,
    "group_id": 0, "status_id": 143, "pipeline_id": 7810667, "loss_reason_id": 18764247, "created_by": 0,
    "updated_by": 0, "created_at": 1709579763, "updated_at": 1713970855, "closed_at": 1709739580,
    "closest_task_at": None, "is_deleted": False,
    "custom_fields_values": [
        {"field_id": 926914, "field_name": "WhatsApp Verificado", "field_code": None, "field_type": "text",
         "values": [{"value": "TRUE"}]},
        {"field_id": 747664, "field_name": "Programa", "field_code": None, "field_type": "select",
         "values": [{"value": "Diplomado en Creación Digital", "enum_id": 656296, "enum_code": None}]}],
    "score": None, "account_id": 32067039, "labor_cost": None,
    "_links": {"self": {"href": "https://auladisermx.kommo.com/api/v4/leads/5765922?with=contacts&page=1&limit=250"}},
    "_embedded": {"tags": [{"id": 61124, "name": "FBD", "color": None}], "companies": [],
                  "contacts": [{"id": 7140816, "is_main": True, "_links": {"self": {"href": (
                      "https://auladisermx.kommo.com/api/v4/contacts/7140816?with=contacts&page=1&limit=250")}}}]},
}
#: The task of the tasks-api documentation example (amocrm-api.md §3.6), with a result and without.
DOC_TASKS = [
    {"id": 7087, "created_by": 3987910, "updated_by": 3987910, "created_at": 1575364000, "updated_at": 1575364851,
     "responsible_user_id": 123123, "group_id": 0, "entity_id": 167353, "entity_type": "leads", "duration": 0,
     "is_completed": True, "task_type_id": 2, "text": "Пригласить на бесплатную тренировку", "result": [],
     "complete_till": 1575665940, "account_id": 321321,
     "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/tasks/7087"}}},
]
DOC_TASKS.append({**DOC_TASKS[0], "result": {"text": "Клиент записан на тренировку"}})  # "result object {text}"
#: The contacts-api documentation example (amocrm-api.md §3.5) as a list answer without ``with=``:
#: multitext values carry ``enum_code`` (what the official library reads; the doc prints the older
#: ``enum``) and ``is_deleted`` from the doc's field table.
DOC_CONTACT = {
    "id": 3, "name": "Иван Иванов", "first_name": "Иван", "last_name": "Иванов", "responsible_user_id": 504141,
    "group_id": 0, "created_by": 504141, "updated_by": 504141, "created_at": 1582117331, "updated_at": 1590943929,
    "closest_task_at": None, "is_deleted": False,
    "custom_fields_values": [{"field_id": 3, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
                              "values": [{"value": "+79123", "enum_id": 1, "enum_code": "WORK"}]}],
    "account_id": 28805383, "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/contacts/3"}},
    "_embedded": {"tags": [], "companies": [{"id": 1, "_links": {"self": {
        "href": "https://example.amocrm.ru/api/v4/companies/1"}}}]},
}
#: Call-note params known to the official library (amocrm-api.md §3.7).
CALL_PARAMS = {"uniq": str, "duration": int, "source": str, "link": (str, type(None)), "phone": str,
               "call_status": (int, type(None)), "call_result": str}


sample = load_sample


def digest(pages) -> str:
    h = hashlib.sha256()
    for entity, page in pages:
        h.update(json.dumps([entity, page], ensure_ascii=False, sort_keys=False).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def pages() -> list[tuple[str, dict]]:
    return list(demo.generate_account(seed=7, today=DEMO_TODAY))


@pytest.fixture(scope="module")
def items(pages) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for entity, page in pages:
        if entity == "account":
            out[entity].append(page)
        elif page:
            out[entity].extend(next(iter(page["_embedded"].values())))
    return out


@pytest.fixture(scope="module")
def frames(demo_store) -> dict[str, pd.DataFrame]:
    return load_frames(demo_store, "demo")


def ts(day: date) -> int:
    return int(datetime.combine(day, datetime.min.time(), MSK).timestamp())


# -- determinism and streaming --------------------------------------------------------------
def test_same_seed_and_today_give_identical_pages_and_other_seeds_differ(pages):
    again = demo.generate_account(seed=7, today=DEMO_TODAY)
    assert digest(again) == digest(pages)
    small = digest(demo.generate_account(seed=7, today=DEMO_TODAY, scale=0.1))
    assert digest(demo.generate_account(seed=8, today=DEMO_TODAY, scale=0.1)) != small
    assert digest(demo.generate_account(seed=7, today=DEMO_TODAY + timedelta(days=7), scale=0.1)) != small


def test_pages_do_not_depend_on_string_hashing():
    script = textwrap.dedent("""
        import hashlib, json
        from datetime import date
        from kpi_lib.demo import generate_account
        h = hashlib.sha256()
        for entity, page in generate_account(seed=7, today=date(2026, 11, 25), scale=0.1):
            h.update(json.dumps([entity, page], ensure_ascii=False).encode())
        print(h.hexdigest())
    """)
    digests = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED=str(n))).stdout.strip()
               for n in (1, 2)}
    assert digests == {digest(demo.generate_account(seed=7, today=DEMO_TODAY, scale=0.1))}


def test_spooled_generation_equals_the_in_memory_one(monkeypatch):
    kept = digest(demo.generate_account(seed=7, today=DEMO_TODAY, scale=0.1))
    monkeypatch.setattr(demo, "CACHE_LEADS", 50)  # the temporary-file path taken at large scales
    assert digest(demo.generate_account(seed=7, today=DEMO_TODAY, scale=0.1)) == kept


def test_bad_arguments_name_the_fix():
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        demo.generate_account(today="2026-13-01")
    with pytest.raises(ConfigError, match="not a date"):
        demo.generate_account(today=datetime(2026, 11, 25, 12))
    assert demo.generate_account(today="2026-11-25") is not None
    with pytest.raises(ConfigError, match="seed"):
        demo.generate_account(seed="7")
    with pytest.raises(ConfigError, match="scale"):
        demo.generate_account(scale=0)


def users_and_leads(scale: float, leads: bool = True) -> tuple[int, int]:
    """Users and leads of the demo at ``scale`` (the generator stops once the users are out unless ``leads``)."""
    users = count = 0
    for entity, page in demo.generate_account(seed=7, today=DEMO_TODAY, scale=scale):
        if entity == "users":
            users += len(page["_embedded"]["users"])
        elif entity == "leads":
            count += len(page["_embedded"]["leads"])
        elif entity == "contacts" or (entity == "pipelines" and not leads):
            break
    return users, count


def test_scale_adds_managers_then_leads(pages):
    base = sum(len(p["_embedded"]["leads"]) for e, p in pages if e == "leads")
    users, leads = users_and_leads(0.1)
    assert users == 9 and 0.05 * base < leads < 0.2 * base  # eight managers and a supervisor at any small scale
    assert users_and_leads(2.5, leads=False)[0] == 21
    assert users_and_leads(20, leads=False)[0] == 121  # managers stop at 120; their leads keep growing


# -- pages as a live sync receives them ----------------------------------------------------
def test_pages_come_in_dependency_order_with_hal_links(pages):
    order = [entity for entity, _ in pages]
    assert [e for i, e in enumerate(order) if i == 0 or order[i - 1] != e] == ORDER
    by_entity = defaultdict(list)
    for entity, page in pages[1:]:
        by_entity[entity].append(page)
    for entity, entity_pages in by_entity.items():
        path, params, collection, limit = demo.ENDPOINTS[entity]
        for n, page in enumerate(entity_pages, start=1):
            assert set(page) >= {"_links", "_embedded"} and collection in page["_embedded"]
            assert len(page["_embedded"][collection]) <= limit
            if "_page" in page:
                assert page["_page"] == n
            assert page["_links"]["self"]["href"].startswith(f"https://demo-sales.amocrm.ru{path}")
            assert ("next" in page["_links"]) == (n < len(entity_pages)), (entity, n)
        if len(entity_pages) > 1:
            assert len(entity_pages[0]["_embedded"][collection]) == limit
    assert demo.ENDPOINTS["events"][3] == 100 and demo.ENDPOINTS["leads"][3] == 250


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {int: "integer", float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def shape_errors(sample, item, path: str, extra: set[str] = frozenset(), skip: set[str] = frozenset()) -> list[str]:
    """Where ``item`` departs from ``sample``: keys (``extra`` paths may be added) and JSON types, recursively.

    A null on either side matches anything (the API's nullable fields); a list item must
    match one of the sample's items.
    """
    if path in skip or sample is None or item is None:
        return []
    if _json_type(sample) != _json_type(item):
        return [f"{path}: {_json_type(item)} instead of {_json_type(sample)}"]
    errors = []
    if isinstance(sample, dict):
        errors += [f"{path}.{k}: missing" for k in sample if k not in item]
        errors += [f"{path}.{k}: not in the sample" for k in item if k not in sample and f"{path}.{k}" not in extra]
        for key in set(sample) & set(item):
            errors += shape_errors(sample[key], item[key], f"{path}.{key}", extra, skip)
    elif isinstance(sample, list) and sample:
        for n, element in enumerate(item):
            tries = [shape_errors(s, element, f"{path}[]", extra, skip) for s in sample]
            if all(tries):
                errors += [f"(item {n}) {e}" for e in min(tries, key=len)]
    return errors


def assert_shapes(samples: list, demo_items: list, path: str, **kw) -> None:
    assert demo_items, f"no demo {path}"
    for item in demo_items:
        tries = [shape_errors(s, item, path, **kw) for s in samples]
        assert not all(tries), f"{path} {item.get('id')}: {min(tries, key=len)[:5]}"


def test_account_and_users_have_the_documented_shapes(items):
    account = sample("account.docs.json")
    assert_shapes([account], items["account"], "account",
                  extra={"account.currency", "account.currency_symbol", "account.created_at"})
    users = sample("users_list.docs.json")
    assert_shapes(users["_embedded"]["users"], items["users"], "user")
    settings = items["account"][0]["_embedded"]["datetime_settings"]
    assert settings["timezone"] == "Europe/Moscow" and items["account"][0]["currency"] == "RUB"
    assert items["account"][0]["subdomain"] == "demo-sales"


def test_pipelines_have_the_documented_shape(pages):
    sample_page = sample("leads_pipelines_list.docs.json")
    page = next(p for e, p in pages if e == "pipelines")
    assert set(page) == set(sample_page)
    assert_shapes(sample_page["_embedded"]["pipelines"], page["_embedded"]["pipelines"], "pipeline")
    for pipeline in page["_embedded"]["pipelines"]:
        statuses = pipeline["_embedded"]["statuses"]
        assert statuses[0]["type"] == 1 and [s["type"] for s in statuses[1:]] == [0] * (len(statuses) - 1)
        assert [s["sort"] for s in statuses] == sorted(s["sort"] for s in statuses)
        assert {(s["id"], s["sort"]) for s in statuses[-2:]} == {(142, 10000), (143, 11000)}
    assert len(page["_embedded"]["pipelines"]) == 2


def test_leads_have_the_shape_of_the_real_capture(pages, items):
    capture = sample("leads_list.real_capture.json")
    assert_shapes(capture["_embedded"]["leads"] + [KOMMO_LEAD], items["leads"], "lead")
    first = next(p for e, p in pages if e == "leads")
    assert set(first) == set(capture) | {"_links"} and "_total_items" not in first
    lead = items["leads"][0]
    assert lead["_links"]["self"]["href"].endswith(f"/api/v4/leads/{lead['id']}?with=contacts&page=1&limit=250")
    assert all(set(lead["_embedded"]) == {"tags", "companies", "contacts"} for lead in items["leads"])


def test_contacts_and_companies_have_the_documented_shape(items):
    assert_shapes([DOC_CONTACT], items["contacts"], "contact")
    company = {k: v for k, v in DOC_CONTACT.items() if k not in ("first_name", "last_name")}
    company["_embedded"] = {"tags": []}
    company["custom_fields_values"] = [{"field_id": 5, "field_name": "Web", "field_code": "WEB", "field_type": "url",
                                        "values": [{"value": "https://example.ru"}]}]
    assert_shapes([company], items["companies"], "company")
    assert all(v["enum_code"] in ("WORK", "MOB") for c in items["contacts"] for f in c["custom_fields_values"]
               for v in f["values"])


def test_tasks_notes_and_events_have_the_documented_shapes(items):
    assert_shapes(DOC_TASKS, items["tasks"], "task")
    assert all(t["result"] == [] or set(t["result"]) == {"text"} for t in items["tasks"])
    notes = sample("notes_list.docs.json")["_embedded"]["notes"]
    calls = items["lead_notes"] + items["contact_notes"]
    assert_shapes(notes, calls, "note", skip={"note.params"})
    for note in calls:
        assert note["note_type"] in ("call_in", "call_out")
        assert set(note["params"]) <= set(CALL_PARAMS), note["params"]
        for key, kind in CALL_PARAMS.items():
            assert key not in note["params"] or isinstance(note["params"][key], kind), (key, note["params"])
    events = sample("events_list.docs.json")["_embedded"]["events"]
    assert_shapes(events, items["events"], "event", skip={"event.value_after", "event.value_before"})
    value_shapes = {
        "lead_status_changed": {"lead_status": {"id": 1, "pipeline_id": 1}},
        "entity_responsible_changed": {"responsible_user": {"id": 1}},
        "incoming_call": {"note": {"id": 1}}, "outgoing_call": {"note": {"id": 1}},
    }
    for event in items["events"]:
        assert isinstance(event["id"], str) and len(event["id"]) == 26
        shape = value_shapes.get(event["type"])
        if shape is None:
            assert event["value_after"] == [] and event["value_before"] == [], event
        else:
            assert not shape_errors(shape, event["value_after"][0], "value_after"), event
            if event["type"] in ("lead_status_changed", "entity_responsible_changed"):
                assert not shape_errors(shape, event["value_before"][0], "value_before"), event
    assert len({e["id"] for e in items["events"]}) == len(items["events"])


# -- the store built through the sync's ingest path ----------------------------------------
def test_the_store_holds_what_was_generated(demo_store, items, frames):
    started = time.perf_counter()
    load_frames(demo_store, "demo")
    assert time.perf_counter() - started < 30  # a few seconds here; only a gross regression fails
    for table in ("account", "users", "pipelines", "statuses", "lead_custom_fields", "leads", "lead_contacts",
                  "lead_companies", "contacts", "companies", "tasks", "calls", "events", "custom_field_values"):
        assert len(frames[table]) > 0, table
    assert frames["leads"]["price"].dtype.kind == "f" and frames["tasks"]["is_completed"].dtype.kind == "b"
    assert frames["events"]["id"].map(type).eq(str).all()
    # a lead known only from its lead_deleted event is a row marked deleted (kpi-definitions.md §0)
    latest = {}
    for event in sorted(items["events"], key=lambda e: e["created_at"]):
        if event["type"] in ("lead_deleted", "lead_restored"):
            latest[event["entity_id"]] = event["type"]
    unlisted = {i for i, kind in latest.items() if kind == "lead_deleted"} - {lead["id"] for lead in items["leads"]}
    assert unlisted and len(frames["leads"]) == len(items["leads"]) + len(unlisted)
    assert frames["leads"].set_index("id").loc[sorted(unlisted), "is_deleted"].all()
    assert len(frames["calls"]) == len(items["lead_notes"]) + len(items["contact_notes"])
    assert len(frames["events"]) == len(items["events"])
    with Store.open(demo_store, "demo") as store:
        assert store.raw_items("users") == sorted(items["users"], key=lambda u: str(u["id"]))
        assert store.last_sync_at() == datetime.combine(DEMO_TODAY, datetime.min.time(), MSK)
        assert store.get_state("events")["cursor"] == ts(DEMO_TODAY)
        assert store.get_state("users")["cursor"] is None
        assert store.get_meta("demo")["seed"] == 7


def test_events_come_in_time_order_and_nothing_precedes_its_lead(items, frames):
    times = [e["created_at"] for e in items["events"]]
    assert times == sorted(times)  # as the API lists them
    leads = frames["leads"].set_index("id")["created_at"]  # unknown for a deleted lead (its id only)
    events = frames["events"][frames["events"]["entity_type"] == "leads"]
    assert (events["created_at"].to_numpy() >= leads.reindex(events["entity_id"]).fillna(0).to_numpy()).all()
    calls = frames["calls"][frames["calls"]["entity_type"] == "leads"]
    assert (calls["created_at"].to_numpy() >= leads.reindex(calls["entity_id"]).fillna(0).to_numpy()).all()
    tasks = frames["tasks"][frames["tasks"]["entity_type"] == "leads"]
    assert (tasks["created_at"].to_numpy() >= leads.reindex(tasks["entity_id"]).fillna(0).to_numpy()).all()
    closed = frames["leads"].dropna(subset=["closed_at"])
    assert (closed["closed_at"] > closed["created_at"]).all()


def test_history_spans_26_weeks_ending_with_the_last_complete_week(frames):
    monday = DEMO_TODAY - timedelta(days=DEMO_TODAY.weekday())
    first_monday = monday - timedelta(weeks=26)
    leads, calls, events = frames["leads"], frames["calls"], frames["events"]
    assert leads["created_at"].min() >= ts(first_monday)
    assert leads["created_at"].min() < ts(first_monday + timedelta(days=3))
    for frame in (leads, calls, events):
        assert frame["created_at"].max() < ts(DEMO_TODAY)
    last_week = leads["created_at"].between(ts(monday - timedelta(weeks=1)), ts(monday) - 1)
    current = leads["created_at"] >= ts(monday)
    assert last_week.sum() > 50 and current.sum() > 0


# -- the patterns the KPIs need ------------------------------------------------------------
def test_people_supervisor_archetypes_and_a_manager_who_left(frames, items):
    users = frames["users"]
    assert users["is_admin"].sum() == 1 and (~users["is_active"]).sum() == 1 and 0 not in set(users["id"])
    assert len(users) == 9
    calls = frames["calls"]
    assert (calls["created_by"] == 0).any() and (calls["responsible_user_id"] == 0).any()
    assert (frames["tasks"]["created_by"] == 0).any()
    # the seed's archetypes: a high check at few calls against a lower check at many calls
    leads = frames["leads"]
    won = leads[(leads["status_id"] == 142) & (leads["price"] > 0)]
    check = won.groupby("responsible_user_id")["price"].mean()
    caller = calls["responsible_user_id"].where(calls["responsible_user_id"] > 0, calls["created_by"])
    connected = (calls["call_status"] == 4) | (calls["call_status"].isna() & (calls["duration"] >= 20))
    talks = caller[connected.fillna(False)].value_counts()
    high, low = FIRST_MANAGER_ID, FIRST_MANAGER_ID + 1
    assert check[high] > 1.3 * check[low]
    assert talks[low] > 3 * talks[high]
    assert check[low] * talks[low] > check[high] * talks[high]


def test_calls_cover_every_status_mapping_and_duplicate(frames):
    calls, leads, links = frames["calls"], frames["leads"], frames["lead_contacts"]
    assert set(calls["call_status"].dropna().astype(int)) == set(range(1, 9))
    missing = calls[calls["call_status"].isna()]
    assert {19, 20} <= set(missing["duration"].astype(int))
    assert set(calls["entity_type"]) == {"leads", "contacts"} and set(calls["note_type"]) == {"call_in", "call_out"}
    uniq = calls[calls["uniq"].notna()].groupby("uniq")["entity_type"].agg(set)
    assert (uniq.map(len) == 2).sum() > 10  # the same call logged on the lead and on its contact
    same_second = calls[calls["uniq"].notna()].groupby("uniq")["created_at"].agg(["size", "nunique"])
    assert ((same_second["size"] == 2) & (same_second["nunique"] == 1)).any()  # the lower id is kept
    # contact calls: mapped to a live lead (some just before it was made) and mapped to none
    cc = calls[calls["entity_type"] == "contacts"].merge(links, left_on="entity_id", right_on="contact_id")
    cc = cc.merge(leads[["id", "created_at", "closed_at"]], left_on="lead_id", right_on="id",
                  suffixes=("", "_lead"))
    live = (cc["created_at_lead"] <= cc["created_at"] + 600) & (
        cc["closed_at"].isna() | (cc["closed_at"] >= cc["created_at"]))
    mapped = set(cc.loc[live.fillna(False), "id"])
    contact_calls = set(calls.loc[calls["entity_type"] == "contacts", "id"])
    assert len(mapped) > 100 and len(contact_calls - mapped) > 50
    before = live & (cc["created_at"] < cc["created_at_lead"])
    assert before.sum() > 50


def test_supervisor_escalations_takeovers_and_deletions(frames):
    users, tasks, events, calls = frames["users"], frames["tasks"], frames["events"], frames["calls"]
    supervisor = int(users.loc[users["is_admin"], "id"].iloc[0])
    managers = set(users.loc[~users["is_admin"], "id"])
    e1 = tasks[(tasks["responsible_user_id"] == supervisor) & tasks["created_by"].isin(managers)
               & (tasks["entity_type"] == "leads")]
    assert len(e1) > 30
    changes = events[events["type"] == "entity_responsible_changed"]
    assert set(changes["entity_type"]) == {"leads", "contacts"}  # only lead events rebuild owners
    changes = changes[changes["entity_type"] == "leads"]
    moves = events[events["type"] == "lead_status_changed"]
    assert (moves["pipeline_before"] != moves["pipeline_after"]).sum() > 20  # between pipelines: no advance
    assert (changes["responsible_after"] == supervisor).sum() > 20
    assert (changes["responsible_after"].isin(managers) & changes["responsible_before"].isin(managers)).sum() > 20
    assert ((calls["created_by"] == supervisor) & (calls["call_status"] == 4)).any()
    deleted = events.loc[events["type"] == "lead_deleted", "entity_id"]
    assert len(deleted) >= 10 and (events["type"] == "lead_restored").any()
    present = frames["leads"].set_index("id")["is_deleted"]
    restored = events.loc[events["type"] == "lead_restored", "entity_id"]
    assert deleted.isin(present.index).all()  # even those never listed: a row marked deleted
    assert present[deleted[~deleted.isin(restored)]].all() and not present[restored].any()
    assert {"lead_status_changed", "task_completed", "incoming_call", "outgoing_call"} <= set(events["type"])


def test_csat_covers_part_of_the_won_deals_with_some_invalid_values(frames):
    leads, values = frames["leads"], frames["custom_field_values"]
    csat = values[values["field_name"] == "CSAT"].set_index("entity_id")["value"]
    won = leads.loc[(leads["status_id"] == 142) & ~leads["is_deleted"], "id"]
    assert 40 <= 100 * won.isin(csat.index).mean() <= 90
    assert {"0", "7", "отлично"} & set(csat) and set("12345") <= set(csat)
    assert set(frames["lead_custom_fields"]["name"]) >= {"CSAT", "NPS"}
    # repeat buyers: a contact with several won deals over time
    wins = frames["lead_contacts"].merge(leads[leads["status_id"] == 142], left_on="lead_id", right_on="id")
    assert (wins.groupby("contact_id")["lead_id"].nunique() >= 2).sum() > 30
    assert (~won.isin(frames["lead_contacts"]["lead_id"])).sum() > 10  # won without a contact
    assert ((leads["status_id"] == 142) & (leads["price"] == 0)).sum() > 10  # unpriced wins


def test_tasks_of_every_kind(frames):
    tasks, leads = frames["tasks"], frames["leads"]
    done = tasks[tasks["is_completed"]]
    assert done["result_text"].notna().sum() > 100 and done["result_text"].isna().sum() > 100
    cutoff = ts(DEMO_TODAY)
    open_tasks = tasks[~tasks["is_completed"]]
    assert (open_tasks["complete_till"] < cutoff).sum() > 50  # overdue
    assert (tasks["complete_till"] < tasks["created_at"] - 60).sum() > 10  # born overdue
    assert set(tasks["entity_type"].dropna()) == {"leads", "contacts", "companies"}
    assert tasks["entity_type"].isna().sum() > 5 and set(tasks["task_type_id"]) == {1, 2}
    on_leads = tasks.merge(leads[["id", "closed_at"]], left_on="entity_id", right_on="id", suffixes=("", "_lead"))
    assert (on_leads["created_at"] > on_leads["closed_at"]).sum() > 30  # tasks on closed deals
    texts = set(tasks["text"])
    assert {"позвонить", "Перезвонить!", "задача"} <= texts
    assert any(len(t.split()) >= 8 for t in texts)
    days = pd.to_datetime(open_tasks["complete_till"], unit="s", utc=True).dt.tz_convert(MSK).dt.date
    managers = open_tasks["responsible_user_id"]
    for day in (DEMO_TODAY, DEMO_TODAY + timedelta(days=1)):
        assert managers[days == day].nunique() >= 5, day
    events = frames["events"]
    completions = events.loc[events["type"] == "task_completed", "entity_id"].value_counts()
    assert len(completions) > 0.7 * len(done) and (completions > 1).sum() > 20  # reopened and completed again
    assert len(set(done["id"]) - set(completions.index)) > 50  # completion time from updated_at
    due_day = pd.to_datetime(tasks["complete_till"], unit="s", utc=True).dt.tz_convert(MSK).dt.date
    assert tasks.groupby([tasks["responsible_user_id"], due_day]).size().max() > 25  # more than a day can hold
    assert tasks["entity_id"].isin(leads.loc[leads["is_deleted"], "id"]).any()  # not audited


# -- atomic builds -------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_killed_or_failed_build_leaves_the_previous_store_intact(demo_store, tmp_path):
    target = tmp_path / "demo.duckdb"
    shutil.copy(demo_store / "demo.duckdb", target)
    before = _sha(target)
    script = textwrap.dedent(f"""
        from datetime import date
        from kpi_lib.demo import build_demo
        build_demo({str(tmp_path)!r}, today=date(2026, 11, 25))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".demo.build-*/demo.duckdb*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert _sha(target) == before
    assert len(load_frames(tmp_path, "demo")["leads"]) > 1000
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        demo.build_demo(tmp_path, today="2026-02-30")
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(StoreError, match="a-file.*--data-dir"):
        demo.build_demo(tmp_path / "a-file" / "data", today=DEMO_TODAY)
    assert _sha(target) == before
    # a later build replaces the store, drops a stale write-ahead log and the dead build's folder
    (tmp_path / "demo.duckdb.wal").write_bytes(b"stale")
    assert demo.build_demo(tmp_path, seed=3, today=DEMO_TODAY, scale=0.1) == target
    assert not (tmp_path / "demo.duckdb.wal").exists() and not list(tmp_path.glob(".demo.build-*"))
    assert [p.name for p in tmp_path.glob("*.duckdb")] == ["demo.duckdb"]
    assert 200 < len(load_frames(tmp_path, "demo")["leads"]) < 500


# -- every primary figure has data ---------------------------------------------------------
def test_every_primary_figure_has_values_for_most_managers_in_most_weeks(demo_store):
    kpis = pytest.importorskip("kpi_lib.kpis")
    from kpi_lib.config import load_settings
    from kpi_lib.kpis.registry import BLOCKS

    settings = load_settings(None, overrides={"data_dir": str(demo_store), "account": "demo", "as_of": DEMO_AS_OF})
    ctx = kpis.load_context(settings)
    trends = kpis.compute_trends(ctx, weeks=26)
    assert trends["week"].nunique() == 26 and trends["week"].max() == "2026-W47"
    managers = trends[trends["manager"] != "team"]
    for block in BLOCKS:
        key = block.primary
        figure = managers[(managers["block"] == block.name) & (managers["key"] == key)]
        filled = figure.groupby("manager")["value"].apply(lambda v: v.notna().mean())
        assert (filled >= 0.6).sum() >= 7, (key, filled.round(2).to_dict())
        assert figure["value"].nunique() > 8, key
