"""The DuckDB store: upsert, typed tables, transactions, kills and concurrent readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from kpi_lib.errors import StoreError
from kpi_lib.store import TABLES, Store, load_frames, resolve_account
from tests.samples import load_sample



sample = load_sample


def lead(lead_id: int, price: float, updated_at: int = 100, **extra) -> dict:
    body = {"id": lead_id, "name": f"Сделка {lead_id}", "price": price, "responsible_user_id": 11,
            "status_id": 142, "pipeline_id": 1, "created_at": 50, "updated_at": updated_at, "closed_at": 90,
            "is_deleted": False, "custom_fields_values": None,
            "_embedded": {"tags": [], "companies": [], "contacts": [{"id": 7, "is_main": True}]}}
    body.update(extra)
    return body


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path, "acme", read_only=False, create=True) as s:
        yield s


def test_real_samples_fill_typed_tables(store):
    assert store.ingest_page("leads", sample("leads_list.real_capture.json")) == 7
    assert store.ingest_page("users", sample("users_list.docs.json")) == 2
    assert store.ingest_page("pipelines", sample("leads_pipelines_list.docs.json")) == 1
    assert store.ingest_page("events", sample("events_list.docs.json")) == 1
    assert store.ingest_page("lead_notes", sample("notes_list.docs.json")) == 2
    assert store.ingest_page("account", sample("account.docs.json")) == 1
    counts = store.counts()
    assert counts["leads"] == 7 and counts["lead_companies"] == 6
    assert counts["statuses"] == 5 and counts["users"] == 2
    assert counts["calls"] == 0  # the sample notes are common and attachment notes
    users = store.frame("users").set_index("id")
    assert bool(users.loc[321321, "is_admin"]) and not bool(users.loc[123123, "is_admin"])
    assert store.frame("account").loc[0, "timezone"] == "Europe/Moscow"
    statuses = store.frame("statuses").set_index("id")
    assert statuses.loc[142, "sort"] == 10000 and statuses.loc[32392156, "type"] == 1
    leads = store.frame("leads").set_index("id")
    assert leads.loc[38473179, "price"] == 2000000
    assert store.frame("events").loc[0, "note_id"] == 42743871


def test_upsert_replaces_by_id_and_children(store):
    store.ingest("leads", [lead(1, 100), lead(2, 200)])
    changed = lead(1, 150, updated_at=200)
    changed["_embedded"]["contacts"] = [{"id": 8, "is_main": False}, {"id": 9, "is_main": True}]
    changed["custom_fields_values"] = [{"field_id": 5, "field_name": "CSAT", "field_code": None,
                                        "field_type": "numeric", "values": [{"value": "5"}]}]
    store.ingest("leads", [changed])
    leads = store.frame("leads").set_index("id")
    assert list(leads.index) == [1, 2]
    assert leads.loc[1, "price"] == 150 and leads.loc[1, "updated_at"] == 200
    links = store.frame("lead_contacts")
    assert sorted(links[links.lead_id == 1].contact_id) == [8, 9]
    assert list(links[links.lead_id == 2].contact_id) == [7]
    cfv = store.frame("custom_field_values")
    assert list(cfv.value) == ["5"] and list(cfv.entity_id) == [1]
    raw = {it["id"]: it for it in store.raw_items("leads")}
    assert raw[1]["price"] == 150 and len(raw) == 2


def test_call_notes_become_calls_and_events_keep_arrival_order(store):
    note = {"id": 5, "entity_id": 1, "created_by": 11, "updated_by": 11, "created_at": 10, "updated_at": 10,
            "responsible_user_id": 11, "note_type": "call_out",
            "params": {"uniq": "u-1", "duration": 20, "source": "pbx", "phone": "+7900", "call_status": 4}}
    store.ingest("contact_notes", [note, {**note, "id": 6, "note_type": "common", "params": {"text": "x"}}])
    calls = store.frame("calls")
    assert list(calls.entity_type) == ["contact"] and calls.loc[0, "duration"] == 20
    assert calls.loc[0, "call_status"] == 4 and calls.loc[0, "uniq"] == "u-1"
    ev = {"type": "entity_responsible_changed", "entity_type": "lead", "entity_id": 1, "created_by": 11,
          "created_at": 100, "value_before": [{"responsible_user": {"id": 11}}],
          "value_after": [{"responsible_user": {"id": 12}}]}
    store.ingest("events", [{**ev, "id": "b"}, {**ev, "id": "a"}])
    store.ingest("events", [{**ev, "id": "b"}])  # seen again in an overlap: keeps its place
    events = store.frame("events")
    assert list(events.id) == ["b", "a"]
    assert list(events.responsible_after) == [12, 12] and list(events.responsible_before) == [11, 11]


def test_lead_deleted_and_restored_events_mark_the_lead(store):
    store.ingest("leads", [lead(1, 10), lead(2, 20)])

    def event(eid, kind, at):
        return {"id": eid, "type": kind, "entity_type": "lead", "entity_id": 1, "created_by": 11,
                "created_at": at, "value_before": [], "value_after": []}

    store.ingest("events", [event("d1", "lead_deleted", 300)])
    assert store.frame("leads").set_index("id").is_deleted.to_dict() == {1: True, 2: False}
    store.ingest("events", [event("r1", "lead_restored", 400)])
    assert store.frame("leads").set_index("id").is_deleted.to_dict() == {1: False, 2: False}


def deletion(eid: str, kind: str, entity_type: str, entity_id: int, at: int = 300) -> dict:
    return {"id": eid, "type": kind, "entity_type": entity_type, "entity_id": entity_id, "created_by": 11,
            "created_at": at, "value_before": [], "value_after": []}


def test_deletion_events_take_items_out_of_the_typed_tables(store):
    two = lead(2, 20)
    two["_embedded"] = {"tags": [], "companies": [{"id": 70}], "contacts": [{"id": 8}, {"id": 7, "is_main": True}]}
    store.ingest("leads", [lead(1, 10), two])
    store.ingest("contacts", [{"id": 7, "name": "A", "updated_at": 100}, {"id": 8, "name": "B", "updated_at": 100}])
    store.ingest("companies", [{"id": 70, "name": "C", "updated_at": 100}])
    task = {"id": 5, "entity_id": 1, "entity_type": "leads", "updated_at": 250, "complete_till": 400}
    store.ingest("tasks", [task, {**task, "id": 6, "updated_at": 350}])
    note = {"entity_id": 8, "note_type": "call_in", "created_at": 100, "updated_at": 100, "params": {"duration": 30}}
    store.ingest("contact_notes", [{**note, "id": 90}, {**note, "id": 91, "entity_id": 7}])
    store.ingest("events", [deletion("e1", "lead_deleted", "lead", 1), deletion("e2", "lead_deleted", "lead", 99),
                            deletion("e3", "task_deleted", "task", 5), deletion("e4", "task_deleted", "task", 6),
                            deletion("e5", "contact_deleted", "contact", 8),
                            deletion("e6", "company_deleted", "company", 70),
                            deletion("e7", "entity_merged", "contact", 7, at=310)])
    leads = store.frame("leads").set_index("id")
    assert leads.is_deleted.to_dict() == {1: True, 2: False, 99: True}  # 99 was never fetched
    assert leads.loc[[1, 99]].drop(columns="is_deleted").isna().all().all()  # a deleted lead: its id only
    assert list(store.frame("tasks").id) == [6]  # 6 was updated after its deletion event
    assert store.frame("contacts").empty and store.frame("companies").empty and store.frame("calls").empty
    assert store.frame("lead_contacts").empty and store.frame("lead_companies").empty
    assert {it["id"] for it in store.raw_items("contact_notes")} == set()
    # a lead's remaining links keep consecutive positions, as a fresh sync lists them
    three = lead(3, 30)
    three["_embedded"]["contacts"] = [{"id": 12}, {"id": 13}, {"id": 14}]
    store.ingest("leads", [three])
    store.ingest("events", [deletion("e8", "contact_deleted", "contact", 13, at=400)])
    links = store.frame("lead_contacts")
    assert list(zip(links.contact_id, links.position)) == [(12, 0), (14, 1)]


def test_a_lead_listed_as_deleted_is_a_row_marked_deleted(store):
    store.ingest("leads", [{"id": 4, "updated_at": 500, "updated_by": 11, "is_deleted": True}])  # with=only_deleted
    row = store.frame("leads").iloc[0]
    assert row["id"] == 4 and row["is_deleted"] and row.drop(["id", "is_deleted"]).isna().all()


def test_rows_are_built_by_column_name():
    from kpi_lib.rows import ROWS, typed_frame, typed_rows

    item = {"id": 1, "note_type": "call_in", "rights": {}, "_embedded": {"statuses": [{"id": 2}], "contacts": [{"id": 3}],
            "companies": [{"id": 4}]}, "custom_fields_values": [{"field_id": 5, "values": [{"value": "x"}]}]}
    built = {table for entity in ROWS for table in typed_rows(entity, [item])}
    assert built == set(TABLES)
    for entity in ROWS:
        for table, rows in typed_rows(entity, [item]).items():
            assert list(typed_frame(table, rows).columns) == [c for c, _ in TABLES[table]]
    with pytest.raises(StoreError, match="columns"):
        typed_frame("users", [{"id": 1, "nickname": "x"}])


def test_failed_transaction_leaves_previous_state(store):
    store.ingest("leads", [lead(1, 100)])
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.ingest("leads", [lead(1, 999), lead(2, 5)])
            store.set_state("leads", 12345)
            raise RuntimeError("network dropped mid-page")
    assert store.frame("leads").price.tolist() == [100]
    assert store.get_state("leads") is None


def test_writer_killed_mid_transaction_leaves_old_data_readable(tmp_path):
    with Store.open(tmp_path, "acme", read_only=False, create=True) as s:
        s.ingest("leads", [lead(i, 100) for i in range(1, 51)])
        s.set_state("leads", 100)
    ready = tmp_path / "ready"
    script = textwrap.dedent(f"""
        import time, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
        from kpi_lib.store import Store
        from tests.test_store import lead
        s = Store.open({str(tmp_path)!r}, "acme", read_only=False)
        with s.transaction():
            s.ingest("leads", [lead(i, 777, updated_at=500) for i in range(1, 60001)])
            s.set_state("leads", 500)
            open({str(ready)!r}, "w").close()
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert proc.poll() is None, "the writer exited before reaching the kill point"
            assert time.monotonic() < deadline, "the writer never reached the kill point"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    frames = load_frames(tmp_path, "acme", ["leads"])
    assert len(frames["leads"]) == 50 and set(frames["leads"].price) == {100}
    with Store.open(tmp_path, "acme", read_only=True) as s:
        assert s.get_state("leads")["cursor"] == 100
    with Store.open(tmp_path, "acme", read_only=False) as s:  # and a writer can carry on
        s.ingest("leads", [lead(51, 1)])
        assert s.counts()["leads"] == 51


def test_several_readers_at_once_and_a_clear_error_while_writing(tmp_path):
    with Store.open(tmp_path, "acme", read_only=False, create=True) as s:
        s.ingest("leads", [lead(1, 100)])
    code = ("import sys; sys.path.insert(0, %r); from kpi_lib.store import Store; "
            "s = Store.open(%r, 'acme'); print(len(s.frame('leads'))); import time; time.sleep(1.5)"
            % (str(Path(__file__).resolve().parents[1]), str(tmp_path)))
    readers = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [r.communicate(timeout=60)[0].strip() for r in readers]
    assert outs == ["1", "1", "1"] and all(r.returncode == 0 for r in readers)
    with Store.open(tmp_path, "acme", read_only=False):
        probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0
    assert "being written by another process" in probe.stderr


def test_missing_and_ambiguous_stores_name_the_fix(tmp_path):
    with pytest.raises(StoreError, match="kpi-report demo"):
        Store.open(tmp_path, None)
    for name in ("a", "b"):
        Store.open(tmp_path, name, read_only=False, create=True).close()
    with pytest.raises(StoreError, match="--account"):
        resolve_account(tmp_path, None)
    with pytest.raises(StoreError, match="plain name"):
        Store.open(tmp_path, "../etc", read_only=False, create=True)


def test_every_typed_table_exists_in_a_new_store(store):
    assert set(store.counts()) == set(TABLES)
    assert all(n == 0 for n in store.counts().values())
    store.mark_synced()
    assert store.last_sync_at() is not None


def _open_at_once(folder: str, start, answers) -> None:
    start.wait()
    try:
        with Store.open(folder, "acme", read_only=False, create=True):
            time.sleep(0.05)
        answers.put("ok")
    except StoreError as exc:
        answers.put(str(exc))


def test_two_writers_creating_one_store_never_see_a_damaged_file(tmp_path):
    """Two processes creating the same store at the same instant: one writes, one is told to wait.

    DuckDB writes a new file's header after creating it; a second process opening it in
    between used to read a half-made file and be told to delete it.
    """
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    said = []
    for round_ in range(40):
        folder, start, answers = str(tmp_path / str(round_)), fork.Event(), fork.Queue()
        writers = [fork.Process(target=_open_at_once, args=(folder, start, answers)) for _ in range(2)]
        for writer in writers:
            writer.start()
        time.sleep(0.02)
        start.set()
        for writer in writers:
            writer.join(30)
        said += [answers.get(timeout=5) for _ in writers]
    assert said.count("ok") >= 40
    assert all(answer == "ok" or "being written by another process" in answer for answer in said), \
        [a for a in said if a != "ok"][:3]


def test_frames_hold_what_duckdb_converts_text_included(store):
    """Frames come through Arrow: the same values and dtypes as DuckDB's own conversion, for
    filled, partly null, all-null and empty columns alike (a missing integer or flag makes the
    column pandas' nullable ``Int64`` or ``boolean``)."""
    store.ingest("leads", [lead(3, 10.0), lead(1, 20.0, name=None, closed_at=None),
                           lead(2, 30.0, name="Б", _embedded={"contacts": [{"id": 7}, {"id": 8, "is_main": True}]})])
    store.ingest("users", [{"id": 11, "name": "Anna", "email": None, "lang": None, "rights": {}}])
    store.ingest_page("events", sample("events_list.docs.json"))
    store.con.execute("INSERT INTO lead_contacts (lead_id, contact_id) VALUES (2, 9)")  # no flag, no position
    frames = {table: store.frame(table) for table in TABLES}
    for table in TABLES:
        pd.testing.assert_frame_equal(frames[table], store.con.execute(store._frame_sql(table)).df(), obj=table)
    links = frames["lead_contacts"]
    assert frames["leads"]["closed_at"].dtype == "Int64" and len(frames["tasks"]) == 0
    assert links["is_main"].dtype == "boolean" and links["position"].dtype == "Int32" and links["is_main"].isna().any()
    names = store.frame("leads", ["name", "id"])
    assert names["id"].tolist() == [1, 2, 3] and names["name"].isna().tolist() == [True, False, False]
    assert list(names.columns) == ["name", "id"]
