"""Shared fixtures: the demo account built once per session, and tidy matplotlib state."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import date

import pytest

#: The demo's "today" in tests: fixed so that every figure is reproducible.
DEMO_TODAY = date(2026, 11, 25)
#: "now" pinned inside DEMO_TODAY (a Wednesday): the last complete week is 2026-W47.
DEMO_AS_OF = "2026-11-25T12:00:00+03:00"


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory):
    """A data dir holding the demo account (built once; treat it as read-only).

    Laid out as ``make demo`` does, in a folder of its own (``demo/data``), so that a report run
    without ``--out`` writes to that folder's ``reports/`` and never beside another test's.
    """
    from kpi_lib.demo import build_demo

    data_dir = tmp_path_factory.mktemp("demo") / "data"
    build_demo(data_dir, account="demo", seed=7, today=DEMO_TODAY)
    return data_dir


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@contextmanager
def week_held(out, week: str, what: str, hold_for: float = 120):
    """The week's lock held by a thread of this process (as another run or send would) until the block ends."""
    from kpi_lib.publish import week_lock

    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with week_lock(out, week, what=what):
            held.set()
            release.wait(hold_for)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(30)
    try:
        yield
    finally:
        release.set()
        holder.join()
