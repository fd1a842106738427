"""The history facts kept in the store give exactly the facts and figures built afresh, and go
stale with any write to the data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import DEMO_AS_OF
from kpi_builders import Account, at
from kpi_lib.config import load_settings
from kpi_lib.kpis import block_detail, compute_kpis, compute_trends, load_context
from kpi_lib.kpis.facts import facts_of
from kpi_lib.kpis.history import save_account_facts, stored_history
from kpi_lib.store import Store

ROOT = Path(__file__).resolve().parent.parent


def _settings(data_dir: Path, week: str = "2026-W47", **kpi):
    return load_settings(overrides={"data_dir": str(data_dir), "account": "demo", "week": week, "as_of": DEMO_AS_OF,
                                    "kpi": kpi})


def _is_current(data_dir: Path, account: str) -> bool:
    with Store.open(data_dir, account) as store:
        return stored_history(store.con) is not None


def _everything(data_dir: Path, **kpi) -> dict:
    """The facts and the figures a report reads, for two weeks and their trends."""
    ctx = load_context(_settings(data_dir, **kpi))
    f = facts_of(ctx)
    out = {"calls": f.calls, "activity": f.activity, "worked": f.worked.sort_values(["user_id", "week", "lead_id"], ignore_index=True), "escalation_tasks": f.escalation_tasks,
           "supervisor_calls": f.supervisor_calls, "lead_calls": f.lead_calls, "tasks": f.tasks, "closed": f.closed,
           "W47": compute_kpis(ctx), "W46": compute_kpis(ctx, "2026-W46"), "trends": compute_trends(ctx, 12)}
    for block in ("first_call", "speed_to_lead", "cost_of_service", "productivity"):
        out[block] = block_detail(ctx, block, "2026-W47")
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], pd.DataFrame):
            pd.testing.assert_frame_equal(a[key], b[key], obj=key)
        else:
            assert a[key] == b[key], key


def test_stored_facts_give_the_figures_built_afresh(demo_store, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(demo_store, data_dir)
    assert not _is_current(data_dir, "demo")  # the library's build_demo leaves none
    afresh = _everything(data_dir)
    narrow = _everything(data_dir, pipelines=[7310001], fcr_window_days=3)
    save_account_facts(data_dir, "demo")
    assert _is_current(data_dir, "demo")
    _assert_same(_everything(data_dir), afresh)
    _assert_same(_everything(data_dir, pipelines=[7310001], fcr_window_days=3), narrow)
    assert narrow["W47"] != afresh["W47"]  # the params are applied when the stored facts are read


def test_a_write_after_saving_makes_the_stored_facts_stale(tmp_path):
    acc = Account()
    m = acc.user(101, "Anna")
    acc.lead(1, m, at("2026-11-16 10:00"))
    acc.call(at("2026-11-16 10:05"), m, lead=1)
    acc.write(tmp_path)
    save_account_facts(tmp_path, "test")
    assert _is_current(tmp_path, "test")
    settings = load_settings(overrides={"data_dir": str(tmp_path), "account": "test", "week": "2026-W47",
                                        "as_of": "2026-11-25T12:00:00+03:00"})
    before = compute_kpis(load_context(settings))["kpis"]["first_call"]["team"]
    assert before["first_call_connect_pct"] == 100.0
    with Store.open(tmp_path, "test", read_only=False) as store:  # the first call turns out unanswered
        store.ingest("lead_notes", [{**acc.items["lead_notes"][0], "params": {"uniq": "u-x", "duration": 0,
                                                                              "call_status": 6}}])
    assert not _is_current(tmp_path, "test")
    after = compute_kpis(load_context(settings))["kpis"]["first_call"]["team"]
    assert after["first_call_connect_pct"] == 0.0
    save_account_facts(tmp_path, "test")
    assert compute_kpis(load_context(settings))["kpis"]["first_call"]["team"] == after


def test_the_demo_command_leaves_the_facts_current(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kpi_lib.cli", "demo", "--data-dir", str(tmp_path),
                           "--today", "2026-11-25"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert _is_current(tmp_path, "demo")
