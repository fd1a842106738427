"""The five KPIs and the SMART audit, exactly as defined in ``docs/kpi-definitions.md``.

Typical use (as in the notebooks)::

    from kpi_lib.kpis import load_context, compute_kpis, compute_trends, target_table
    ctx = load_context(settings)
    result = compute_kpis(ctx)                 # the JSON of §8
    trends = compute_trends(ctx, weeks=12)     # tidy: week, week_start, block, key, manager, value

Each block is one record in :mod:`kpi_lib.kpis.registry` (its figures, primary figure,
target, notebook and functions); every block is computed over a span of weeks at once from
per-item facts built once per context, so twelve weeks of trends cost little more than one week.
"""

from __future__ import annotations

from .compute import (block_detail, compute_blocks, compute_kpis, compute_trends, compute_week_and_trends,
                      data_quality, find_items_pulling_down, resolve_week)
from .detail import detail_csv, detail_records
from .items import pick_items_pulling_down
from .context import Context, load_context, read_frames
from .drivers import compute_drivers, compute_moves
from .common import manager_label
from .registry import BLOCK_NAMES as BLOCKS  # the names; registry.BLOCKS holds the records
from .registry import BY_NAME, DETAIL_BLOCKS, Block, Figure, get_block
from .smart_audit import due_tasks
from .targets import target_table

#: The keys of each block, in the order of kpi-definitions.md (``nps``, ``due_*`` only when they apply).
KEYS: dict[str, tuple[str, ...]] = {name: block.keys for name, block in BY_NAME.items()}

__all__ = ["BLOCKS", "DETAIL_BLOCKS", "KEYS", "Block", "Context", "Figure", "block_detail", "compute_blocks",
           "compute_drivers", "compute_kpis", "compute_moves", "compute_trends", "compute_week_and_trends",
           "data_quality", "detail_csv", "detail_records", "due_tasks", "find_items_pulling_down", "get_block",
           "load_context", "manager_label", "pick_items_pulling_down", "read_frames", "resolve_week", "target_table"]
