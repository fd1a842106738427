"""The week's figures for the reports, computed once and shared by every notebook.

:func:`build_week_data` asks :mod:`kpi_lib.kpis` for everything the six reports show (the
§8 result, the 12-week trends, the target table, the item-level rows of every block, the
data-quality frames and, in the current week, the tasks due today and tomorrow).  The weekly
run writes it to ``.week-data.pkl`` in the notebooks' working folder (while it computes, a
``.week-data.pending`` file there tells the notebooks to wait); :func:`load_week_data` reads that file when its key matches the same parameters and the same store file, and
computes afresh otherwise, so a notebook opened in JupyterLab works on its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .config import Settings
from .periods import Week
from .store import resolve_account, store_path

CACHE_NAME = ".week-data.pkl"
#: Present while the weekly run is still computing the cache: readers wait for it.
PENDING_NAME = ".week-data.pending"
PENDING_WAIT = 300
#: Bumped whenever WeekData changes shape, so an old cache file is never read.
CACHE_VERSION = 2


@dataclass
class WeekData:
    """Everything the reports of one week show (see the module docstring)."""

    key: str
    week: Week
    as_of: datetime
    now: datetime
    account: dict[str, Any]
    managers: pd.DataFrame
    last_sync_at: datetime | None
    result: dict[str, Any]
    trends: pd.DataFrame
    targets: pd.DataFrame
    details: dict[str, pd.DataFrame]
    quality: dict[str, pd.DataFrame]
    due: pd.DataFrame | None
    settings: Settings
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def current(self) -> bool:
        """True when the report week holds ``now`` (the week is still running)."""
        return self.week.start <= self.now < self.week.end

    def names(self, team_label: str) -> dict[str, str]:
        """Display names keyed by user id as a string, plus ``team``."""
        out = {str(int(uid)): str(name) for uid, name in zip(self.managers["user_id"], self.managers["name"])}
        out["team"] = team_label
        return out


def cache_key(settings: Settings) -> str:
    """A digest of the data-relevant parameters and the store file's identity."""
    params = settings.notebook_parameters()
    params.pop("lang", None)
    params.pop("email", None)
    account = resolve_account(settings.data_dir, settings.account)
    path = store_path(settings.data_dir, account)
    stat = path.stat()
    payload = {"v": CACHE_VERSION, "params": params, "account": account,
               "store": [str(path.resolve()), stat.st_mtime_ns, stat.st_size]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def build_week_data(settings: Settings, now: datetime | None = None, ctx: Any = None) -> WeekData:
    """Compute the week's figures from the store (the slow path).

    Parameters
    ----------
    settings : Settings
        Resolved settings; ``week`` and ``as_of`` as the notebook received them.
    now : datetime, optional
        The current instant (``settings.as_of`` pins it).
    ctx : kpi_lib.kpis.Context, optional
        The context of these settings, when already loaded.
    """
    from . import kpis

    key = cache_key(settings)
    ctx = ctx if ctx is not None else kpis.load_context(settings, now=now)
    result = kpis.compute_kpis(ctx)
    trends = kpis.compute_trends(ctx, weeks=settings.kpi.trend_weeks)
    targets = kpis.target_table(ctx, result, trends)
    details = {block: kpis.block_detail(ctx, block) for block in kpis.DETAIL_BLOCKS}
    quality = kpis.data_quality(ctx)
    data = WeekData(key=key, week=ctx.week, as_of=ctx.as_of, now=ctx.now, account=dict(ctx.account),
                    managers=ctx.managers.copy(), last_sync_at=ctx.last_sync_at, result=result, trends=trends,
                    targets=targets, details=details, quality=quality, due=None, settings=settings)
    if data.current:
        data.due = kpis.due_tasks(ctx)
    return data


def load_week_data(settings: Settings, folder: str | os.PathLike | None = None,
                   now: datetime | None = None) -> WeekData:
    """The cached figures in ``folder`` (default: the working folder) if they match, else fresh ones."""
    folder = Path(folder or Path.cwd())
    path, pending = folder / CACHE_NAME, folder / PENDING_NAME
    deadline = time.monotonic() + PENDING_WAIT
    while pending.exists() and not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if path.is_file() and _private(path):
        try:
            with path.open("rb") as fh:
                data = pickle.load(fh)
            if isinstance(data, WeekData) and data.key == cache_key(settings):
                data.settings = settings
                return data
        except Exception:  # a stale or damaged cache is simply recomputed
            pass
    return build_week_data(settings, now=now)


def _private(path: Path) -> bool:
    """Only a file this user wrote and nobody else can change is unpickled (it runs code)."""
    info = path.stat()
    return info.st_uid == os.getuid() and not info.st_mode & 0o022


def write_week_data(data: WeekData, folder: str | os.PathLike) -> Path:
    """Write ``data`` to ``folder/.week-data.pkl`` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".week-data.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, folder / CACHE_NAME)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder / CACHE_NAME
