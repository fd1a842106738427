"""The README's Python snippets run as written, on the demo account (as sqlite-utils tests its docs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNIPPETS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


def test_the_readme_has_python_snippets():
    assert len(SNIPPETS) >= 3
    assert any("block_detail(ctx, \"first_call\", week=\"2026-W47\")" in s for s in SNIPPETS)


def test_the_readme_snippets_run_in_order(demo_store, monkeypatch):
    """One namespace for all snippets, in README order: later ones use the names earlier ones set."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("KPI_DATA_DIR", str(demo_store))
    namespace: dict = {}
    for n, snippet in enumerate(SNIPPETS):
        try:
            exec(compile(snippet, f"README.md python snippet {n + 1}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"README python snippet {n + 1} fails: {exc!r}\n{snippet}")
    fcr, items = namespace["fcr"], namespace["items"]
    assert len(fcr) == namespace["result"]["kpis"]["first_call"]["team"]["fcr_eligible"]
    assert set(items["manager"]) <= set(namespace["ctx"].managers["user_id"])
    assert namespace["frames"]["calls"]["entity_type"].isin(["leads", "contacts"]).all()
