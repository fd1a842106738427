"""The KPI registry is the one place a figure is declared: every key it lists has its labels, its
row in the contract, its place in the block's table and its section in the block's notebook."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kpi_lib import i18n
from kpi_lib.cardrun import CARD_NOTEBOOK
from kpi_lib.errors import ConfigError
from kpi_lib.kpis import compute_blocks, compute_kpis, load_context
from kpi_lib.kpis.common import make_span
from kpi_lib.kpis.registry import BLOCKS, KINDS_OF_FIGURE, NOTEBOOKS, check_targets, default_targets
from kpi_lib.config import load_settings
from kpi_lib.kpis.quality import TABLES
from kpi_lib.sections import DISTRIBUTIONS
from tests.conftest import DEMO_AS_OF

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Customer satisfaction", "Cost of service", "First-call quality", "Average check",
            "Manager productivity", "SMART task audit")
SECTION_CALLS = ("headline", "manager_table", "trend_chart", "distribution_chart", "supporting", "data_quality",
                 "method")


def contract_keys() -> list[list[str]]:
    """The keys of each block's table in docs/kpi-definitions.md §1–§6, in the contract's order."""
    text = (ROOT / "docs" / "kpi-definitions.md").read_text(encoding="utf-8")
    out = []
    for number, title in enumerate(SECTIONS, start=1):
        body = re.search(rf"^## {number}\. {re.escape(title)}[^\n]*\n(.*?)(?=^## )", text, re.M | re.S)
        assert body, f"no section '## {number}. {title}' in kpi-definitions.md"
        table = body[1][body[1].index("| key | definition |"):]
        keys = []
        for line in table.splitlines()[2:]:
            if not line.startswith("|"):
                break
            keys += re.findall(r"`(\w+)`", line.split("|")[1])
        out.append(keys)
    return out


def test_blocks_follow_the_contract_order():
    assert [b.name for b in BLOCKS] == ["customer_satisfaction", "cost_of_service", "first_call", "average_check",
                                        "productivity", "smart_audit"]
    assert [b.keys for b in BLOCKS] == [tuple(keys) for keys in contract_keys()]


def test_every_record_is_complete():
    for block in BLOCKS:
        primary = block.figure(block.primary)
        assert block.direction in (">=", "<=") and primary.sample in block.keys, block.name
        assert all(f.kind in KINDS_OF_FIGURE for f in block.figures), block.name
        assert all(f.sample is None or f.sample in block.keys for f in block.figures), block.name
        assert all(f.direction in (None, ">=", "<=") for f in block.figures), block.name
        assert callable(block.compute) and callable(block.detail) and block.distribution in DISTRIBUTIONS
        assert set(block.quality) <= set(TABLES), block.name
        assert set(block.needs) <= {b.name for b in BLOCKS[:BLOCKS.index(block)]}, block.name
    # §7: the defaults of the contract
    assert default_targets() == {"csat_pct": 80, "escalation_rate_pct": 10, "fcr_pct": 70, "avg_check": None,
                                 "revenue_per_active_day": None, "smart_index": 90, "stl_median_min": 5}


def test_every_key_has_an_english_and_a_russian_label():
    for block in BLOCKS:
        for name in [f"block.{block.name}"] + [f"kpi.{key}" for key in block.keys]:
            assert i18n.has_text(name), name
            assert i18n.text(name, "en").strip() and i18n.text(name, "ru").strip(), name


def test_every_block_has_its_notebook_and_sections():
    # every numbered notebook is a block's, but for the one card notebook (rendered once per manager)
    assert sorted([*NOTEBOOKS, CARD_NOTEBOOK]) == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert CARD_NOTEBOOK not in NOTEBOOKS
    for block in BLOCKS:
        nb = json.loads((ROOT / "notebooks" / f"{block.notebook}.ipynb").read_text(encoding="utf-8"))
        source = "\n".join("".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code")
        assert re.search(rf"open_report\(\s*(block=)?[\"']{block.name}[\"']", source), block.notebook
        for call in SECTION_CALLS:
            assert f"report.{call}()" in source, (block.notebook, call)


def test_tables_have_exactly_the_registered_keys(demo_store):
    """What each compute function returns is what its record declares, in the same order."""
    settings = load_settings(overrides={"data_dir": str(demo_store), "as_of": DEMO_AS_OF, "week": "2026-W47",
                                        "kpi": {"nps_field": "NPS"}})
    ctx = load_context(settings)
    tables = compute_blocks(ctx, make_span(ctx, [ctx.week]))
    for block in BLOCKS:
        always = [f.key for f in block.figures if not f.optional]
        assert [k for k in tables[block.name].columns if k in always] == always, block.name
        assert set(tables[block.name].columns) <= set(block.keys), block.name
    assert "nps" in tables["customer_satisfaction"].columns


def test_every_key_is_shown_in_its_notebook_section(demo_store, tmp_path, monkeypatch):
    """``supporting()`` — a section of every block notebook — shows each key's label, optional keys too."""
    from kpi_lib.views import open_report

    monkeypatch.chdir(tmp_path)
    for block in BLOCKS:
        for lang in ("en", "ru"):
            report = open_report(block.name, week="current", as_of=DEMO_AS_OF, data_dir=str(demo_store), lang=lang,
                                 kpi={"nps_field": "NPS"})
            html = report.supporting()._repr_html_()
            for key in block.keys:
                assert i18n.label(key, lang).replace("&", "&amp;") in html, (block.name, key, lang)


def test_counts_are_json_integers(demo_store):
    result = compute_kpis(load_context(load_settings(overrides={"data_dir": str(demo_store), "as_of": DEMO_AS_OF})))
    for block in BLOCKS:
        for key, value in result["kpis"][block.name]["team"].items():
            kind = block.figure(key).kind
            if kind == "count":
                assert type(value) is int, (block.name, key)
            elif kind == "bool":
                assert type(value) is bool, (block.name, key)
            else:
                assert value is None or type(value) is float, (block.name, key)


@pytest.mark.parametrize("targets, message", [
    ({"csat": 80}, "kpi.targets.csat: unknown target: use one of avg_check, csat_pct,"),
    ({"csat_pct": 120}, "kpi.targets.csat_pct: expected a number from 0 to 100 (a percentage), got 120"),
    ({"escalation_rate_pct": -1}, "kpi.targets.escalation_rate_pct: expected a number from 0 to 100 (a percentage)"),
    ({"smart_index": 100.5}, "kpi.targets.smart_index: expected a number from 0 to 100, got 100.5"),
    ({"avg_check": -5}, "kpi.targets.avg_check: expected a number of 0 or more, got -5"),
    ({"stl_median_min": "five"}, "kpi.targets.stl_median_min: expected a number of 0 or more, got 'five'"),
    ({"fcr_pct": True}, "kpi.targets.fcr_pct: expected a number from 0 to 100 (a percentage), got True"),
    ({"avg_check": float("inf")}, "kpi.targets.avg_check: expected a number of 0 or more, got inf"),
])
def test_a_target_is_a_number_in_its_figures_range(targets, message):
    with pytest.raises(ConfigError) as err:
        check_targets(targets)
    assert message in str(err.value)


def test_targets_in_range_pass_as_floats():
    assert check_targets({"csat_pct": 100, "fcr_pct": 0, "avg_check": 1e9, "smart_index": None}) == \
        {"csat_pct": 100.0, "fcr_pct": 0.0, "avg_check": 1e9, "smart_index": None}
