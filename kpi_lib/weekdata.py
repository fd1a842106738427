"""The week's figures for the reports: one snapshot, computed once and shared by every notebook.

:func:`build_week_data` asks :mod:`kpi_lib.kpis` for everything the six reports show (the
§8 result, the 12-week trends, the target table, the item-level rows of every block, the
data-quality frames and, in the current week, the tasks due today and tomorrow).

The weekly run gives its notebooks a private working folder (mode 0700, made by the run):
``run.json`` there names the run's process, and the run writes the snapshot beside it as
``week-data.arrows`` — JSON for the figures and Arrow IPC for the tables, nothing that can
run code.  :func:`load_week_data` in a kernel of that run waits for the snapshot (only while
the run that started the kernel says it is coming) and never recomputes from the store, so
every page of a run shows the same figures as its index, ``summary.json`` and email, even
when a sync finishes meanwhile.  Anywhere else (a notebook opened in JupyterLab) it computes
the figures from the store.  The snapshot
also holds why each figure moved (§11, :func:`kpi_lib.kpis.compute_moves`), which the pages,
the index and the email tell from the same numbers.

A closed week's figures are also kept beside the store, in ``<data_dir>/.figures/<account>/``
(mode 0700, files 0600, the same format), named after what they were computed from: the
store's data generation and last sync, the parameters (the language aside) and this package's
code.  A notebook opened later with the same parameters (or after the weekly run with its
parameters) reads them instead of computing the week again; a sync, any write to the store,
other parameters or other code name other figures, and the figures of older data are removed.
A week still running is never kept: its figures follow the clock.  ``kpi-report sync`` ends
by computing the last week with the notebooks' default parameters (:func:`prepare_week_data`).
A block's notebook that finds no figures of its parameters computes its block only (see
``blocks`` in :func:`build_week_data`), kept under a name of its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from .config import Settings, load_settings
from .errors import KpiError, ReportError
from .files import exists_in, open_private_dir, read_private, write_atomic
from .periods import Week, load_timezone, report_timezone, resolve_now, resolve_week
from .store import GENERATION_KEY, Store, resolve_account, store_path

#: The snapshot, the run's mark and the run's failure note inside the run's private folder.
SNAPSHOT_NAME = "week-data.arrows"
RUN_MARK = "run.json"
FAILED_NAME = "week-data.error"
#: Seconds a notebook waits for the run's figures at most.
SNAPSHOT_WAIT = 600
#: Bumped whenever the snapshot changes shape, so an old one is never read.
SNAPSHOT_VERSION = 4
_MAGIC = b"KPIWEEK1"
#: The folder of the data folder that keeps closed weeks' figures, one folder per account.
KEPT_DIR = ".figures"
#: Sets of figures of the current data kept per account (a parameter set's week, or one block's).
KEEP_FILES = 8


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
    moves: dict[str, dict[str, Any]] = field(default_factory=dict)

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
    """A digest of the data-relevant parameters and the store they read."""
    params = settings.notebook_parameters()
    params.pop("lang", None)
    params.pop("email", None)
    account = resolve_account(settings.data_dir, settings.account)
    payload = {"v": SNAPSHOT_VERSION, "params": params, "account": account,
               "store": str(store_path(settings.data_dir, account).resolve())}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def context_weeks(settings: Settings, blocks: tuple[str, ...] | None = None) -> int:
    """Weeks of items :func:`build_week_data` reads for ``blocks`` (None: all): the week, the shown
    trends, the week before (the drivers) and, when a figure of theirs has no target but the team's
    median, the 12 weeks before the week (a context loaded with them is read from the store once;
    the FCR window after the week comes with them)."""
    from .kpis.targets import TRAILING_WEEKS, median_targeted

    return max(settings.kpi.trend_weeks, TRAILING_WEEKS + 1 if median_targeted(settings, blocks) else 2)


def build_week_data(settings: Settings, now: datetime | None = None, ctx: Any = None,
                    blocks: tuple[str, ...] | None = None) -> WeekData:
    """Compute the week's figures from the store (the slow path).

    Parameters
    ----------
    settings : Settings
        Resolved settings; ``week`` and ``as_of`` as the notebook received them.
    now : datetime, optional
        The current instant (``settings.as_of`` pins it).
    ctx : kpi_lib.kpis.Context, optional
        The context of these settings, when already loaded (with :func:`context_weeks` weeks,
        else the store is read again for the trends).
    blocks : tuple of str, optional
        Only what the reports of these blocks show (their figures and those of the blocks they
        need, their items, drivers and the tasks due), as one block's notebook asks for.
    """
    from . import kpis
    from .kpis.registry import BY_NAME, details_of, reads_of, with_needs

    key = cache_key(settings)
    wanted = with_needs(blocks)
    weeks = context_weeks(settings, wanted)
    if ctx is None:
        ctx = kpis.load_context(settings, now=now, weeks=weeks, parts=reads_of(wanted))
    # one span of weeks gives the week's figures, the chart, the 12-week median targets before
    # the week and the drivers
    result, history = kpis.compute_week_and_trends(ctx, weeks=weeks, blocks=wanted)
    shown = {ctx.week.shift(-i).label for i in range(settings.kpi.trend_weeks)}
    trends = history.loc[history["week"].isin(shown)].reset_index(drop=True)
    targets = kpis.target_table(ctx, result, history)
    details = {name: kpis.block_detail(ctx, name) for name in details_of(wanted)}
    quality = kpis.data_quality(ctx, tables=None if blocks is None else
                                tuple(name for block in wanted for name in BY_NAME[block].quality))
    data = WeekData(key=key, week=ctx.week, as_of=ctx.as_of, now=ctx.now, account=dict(ctx.account),
                    managers=ctx.managers.copy(), last_sync_at=ctx.last_sync_at, result=result, trends=trends,
                    targets=targets, details=details, quality=quality, due=None, settings=settings,
                    moves=kpis.compute_moves(ctx, trends=history, blocks=wanted))
    if data.current:
        data.due = kpis.due_tasks(ctx) if "smart_audit" in wanted else None
    else:
        keep_week_data(data, _kept_name(settings, ctx.generation, ctx.last_sync_at, ctx.week, ctx.now, blocks))
    return data


# --- the snapshot file ----------------------------------------------------------------------

def _frames(data: WeekData) -> dict[str, pd.DataFrame]:
    frames = {"managers": data.managers, "trends": data.trends, "targets": data.targets}
    frames |= {f"details/{k}": v for k, v in data.details.items()}
    frames |= {f"quality/{k}": v for k, v in data.quality.items()}
    if data.due is not None:
        frames["due"] = data.due
    return frames


def dump_week_data(data: WeekData) -> bytes:
    """The snapshot's bytes: a magic, a JSON header (figures and table offsets), Arrow IPC tables,
    compressed with LZ4 (a week's task texts shrink about six times, so the file is written and
    synced to disk sooner)."""
    blobs, offsets, position = [], {}, 0
    options = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
    for name, frame in _frames(data).items():
        sink = pa.BufferOutputStream()  # a file of its own: its footer's offsets count from its start
        table = pa.Table.from_pandas(frame, preserve_index=True)
        with pa.ipc.new_file(sink, table.schema, options=options) as writer:
            writer.write_table(table)
        blob = sink.getvalue()
        offsets[name] = [position, blob.size]
        blobs.append(blob)
        position += blob.size
    iso = lambda t: t.isoformat() if t is not None else None  # noqa: E731
    header = json.dumps({
        "v": SNAPSHOT_VERSION, "key": data.key, "week": [data.week.year, data.week.number, str(data.week.tz)],
        "as_of": iso(data.as_of), "now": iso(data.now), "last_sync_at": iso(data.last_sync_at),
        "account": data.account, "result": data.result, "errors": data.errors, "frames": offsets,
        "moves": data.moves,
    }, ensure_ascii=False, default=_plain).encode("utf-8")
    return b"".join([_MAGIC, struct.pack(">Q", len(header)), header, *blobs])


def _plain(value: Any) -> Any:
    """A numpy scalar as its Python number; anything else JSON cannot hold as its text."""
    return value.item() if hasattr(value, "item") else str(value)


def parse_week_data(raw: bytes, settings: Settings) -> WeekData:
    """A :class:`WeekData` from :func:`dump_week_data`'s bytes (ValueError when they are not one)."""
    if raw[:8] != _MAGIC or len(raw) < 16:
        raise ValueError("not a week snapshot")
    size = struct.unpack(">Q", raw[8:16])[0]
    header = json.loads(raw[16:16 + size].decode("utf-8"))
    if header.get("v") != SNAPSHOT_VERSION:
        raise ValueError(f"snapshot version {header.get('v')}, expected {SNAPSHOT_VERSION}")
    body = memoryview(raw)[16 + size:]
    frames = {}
    for name, (start, length) in header["frames"].items():
        if start + length > len(body):
            raise ValueError(f"the snapshot is cut short in table {name}")
        frames[name] = pa.ipc.open_file(pa.py_buffer(body[start:start + length])).read_pandas()
    year, number, tz_name = header["week"]
    tz = load_timezone(tz_name)
    when = lambda t: datetime.fromisoformat(t).astimezone(tz) if t else None  # noqa: E731
    sync = datetime.fromisoformat(header["last_sync_at"]) if header["last_sync_at"] else None
    return WeekData(
        key=header["key"], week=Week(year, number, tz), as_of=when(header["as_of"]), now=when(header["now"]),
        account=header["account"], managers=frames["managers"], last_sync_at=sync, result=header["result"],
        trends=frames["trends"], targets=frames["targets"],
        details={n.split("/", 1)[1]: f for n, f in frames.items() if n.startswith("details/")},
        quality={n.split("/", 1)[1]: f for n, f in frames.items() if n.startswith("quality/")},
        due=frames.get("due"), settings=settings, errors=header.get("errors") or {}, moves=header.get("moves") or {})


# --- the figures kept beside the store ----------------------------------------------------

@functools.cache
def _code_digest() -> str:
    """A digest of this package's code: figures kept by another version are never read."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _kept_name(settings: Settings, generation: str | None, synced: datetime | None, week: Week,
               now: datetime, blocks: tuple[str, ...] | None = None) -> str | None:
    """The file a closed week's figures are kept in, named after the data they were computed from
    (its generation and last sync), the parameters, the blocks (None: all) and the code; None
    while the week runs or for given frames."""
    if generation is None or now < week.end:
        return None
    params = settings.notebook_parameters()
    for name in ("lang", "email", "as_of"):  # a closed week's as_of is its end, whatever "now" is
        params.pop(name)
    account = resolve_account(settings.data_dir, settings.account)
    params["week"], params["account"] = week.label, account
    data = hashlib.sha256(json.dumps([generation, synced.timestamp() if synced else None]).encode()).hexdigest()
    figures = {"v": SNAPSHOT_VERSION, "code": _code_digest(), "params": params,
               "store": str(store_path(settings.data_dir, account).resolve())}
    if blocks is not None:
        figures["blocks"] = sorted(blocks)
    digest = hashlib.sha256(json.dumps(figures, sort_keys=True, default=str).encode()).hexdigest()
    return f"{data[:16]}-{digest[:32]}.arrows"


def _kept_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / KEPT_DIR / resolve_account(settings.data_dir, settings.account)


def keep_week_data(data: WeekData, name: str | None) -> None:
    """Keep a closed week's figures beside the store for the notebooks opened later (best effort:
    a data folder this user cannot write keeps nothing).  Figures of older data are removed, and
    at most :data:`KEEP_FILES` sets of figures of the current data are kept."""
    if name is None:
        return
    folder = _kept_dir(data.settings)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        dir_fd = open_private_dir(folder)
        if dir_fd is None:
            return  # a folder others can write to is never used
        os.close(dir_fd)
        write_atomic(folder / name, dump_week_data(data), mode=0o600)
        data_part = name.split("-", 1)[0] + "-"
        kept = sorted(folder.glob("*.arrows"), key=lambda p: p.stat().st_mtime, reverse=True)
        fresh = [p for p in kept if p.name.startswith(data_part)]
        for path in [p for p in kept if p not in fresh] + fresh[KEEP_FILES:]:
            path.unlink(missing_ok=True)
    except (OSError, KpiError):
        pass


def prepare_week_data(data_dir: str | os.PathLike, account: str) -> WeekData:
    """Compute and keep the last complete week's figures with the notebooks' default parameters
    (as a notebook opened in JupyterLab asks for them), so that it reads them at once."""
    return build_week_data(load_settings(overrides={"data_dir": str(data_dir), "account": account}))


def read_kept_week_data(settings: Settings, now: datetime | None = None,
                        blocks: tuple[str, ...] | None = None) -> WeekData | None:
    """The week's figures kept by an earlier computation from the same data and parameters, if any
    (``blocks``: the figures of every block, else those computed for these blocks only)."""
    with Store.open(settings.data_dir, settings.account, read_only=True) as store:
        generation, synced = store.get_meta(GENERATION_KEY), store.last_sync_at()
        zones = [z for z in store.frame("account", ["timezone"])["timezone"] if isinstance(z, str) and z]
    tz = report_timezone(settings.kpi.timezone, zones[0] if zones else None)
    now = resolve_now(settings.as_of, tz, now)
    week, _ = resolve_week(settings.week, settings.as_of, tz, now)
    names = [_kept_name(settings, generation, synced, week, now)]
    if blocks is not None:
        names.append(_kept_name(settings, generation, synced, week, now, blocks))
    dir_fd = open_private_dir(_kept_dir(settings)) if names[0] else None
    if dir_fd is None:
        return None
    try:
        raw = next((r for r in (read_private(dir_fd, name) for name in names) if r is not None), None)
    finally:
        os.close(dir_fd)
    try:
        data = parse_week_data(raw, settings) if raw is not None else None
    except (ValueError, KeyError, pa.ArrowException):
        return None  # a damaged file: computed afresh
    if data is not None:
        data.key, data.now = cache_key(settings), now
    return data


# --- the run's side and the notebook's side ---------------------------------------------------

def mark_run_folder(folder: str | os.PathLike, run_id: str) -> None:
    """Tell the notebooks started in ``folder`` that this process brings their figures."""
    write_atomic(Path(folder) / RUN_MARK, json.dumps({"pid": os.getpid(), "run_id": run_id}), mode=0o600)


def write_week_data(data: WeekData, folder: str | os.PathLike) -> Path:
    """Write the snapshot into the run's private ``folder`` (whole, through a rename)."""
    return write_atomic(Path(folder) / SNAPSHOT_NAME, dump_week_data(data), mode=0o600)


def give_up_week_data(folder: str | os.PathLike, error: str) -> None:
    """Tell the waiting notebooks that no figures are coming, and why."""
    folder = Path(folder)
    try:
        write_atomic(folder / FAILED_NAME, error, mode=0o600)
    except (OSError, KpiError):
        pass  # a full disk: removing the mark below still stops the wait
    (folder / RUN_MARK).unlink(missing_ok=True)


def _run_waiting_for(dir_fd: int) -> bool:
    """True while the run that started this process says the figures are coming."""
    raw = read_private(dir_fd, RUN_MARK)
    try:
        return raw is not None and json.loads(raw)["pid"] == os.getppid()
    except (ValueError, KeyError, TypeError):
        return False


def load_week_data(settings: Settings, folder: str | os.PathLike | None = None,
                   now: datetime | None = None, blocks: tuple[str, ...] | None = None) -> WeekData:
    """The run's snapshot when this notebook runs inside a weekly run, else fresh figures
    (kept ones when there are; ``blocks``: a notebook showing only these blocks, which needs no
    more than their figures: see :func:`build_week_data`).

    Inside a run (the working folder is the run's private folder and the run that started
    this kernel marked it), it waits for the snapshot and raises :class:`ReportError` when
    the run could not compute it or it was made for other parameters; it never reads the store.
    """
    dir_fd = open_private_dir(folder or Path.cwd())
    if dir_fd is None:
        return read_kept_week_data(settings, now, blocks) or build_week_data(settings, now=now, blocks=blocks)
    try:
        if not _run_waiting_for(dir_fd) and not exists_in(dir_fd, SNAPSHOT_NAME):
            return read_kept_week_data(settings, now, blocks) or build_week_data(settings, now=now, blocks=blocks)
        deadline = time.monotonic() + SNAPSHOT_WAIT
        raw = read_private(dir_fd, SNAPSHOT_NAME)
        while raw is None and _run_waiting_for(dir_fd) and time.monotonic() < deadline:
            time.sleep(0.02)
            raw = read_private(dir_fd, SNAPSHOT_NAME)
        if raw is None:
            failed = read_private(dir_fd, FAILED_NAME)
            reason = failed.decode("utf-8", "replace") if failed else "the run stopped before they were ready"
            raise ReportError(f"the week's figures could not be computed: {reason}")
        try:
            data = parse_week_data(raw, settings)
        except (ValueError, KeyError, pa.ArrowException) as exc:
            raise ReportError(f"the run's figures cannot be read ({exc}): run 'kpi-report run' again") from exc
        if data.key != cache_key(settings):
            raise ReportError("the run's figures were computed for other parameters than this notebook's: "
                              "run 'kpi-report run' again")
        return data
    finally:
        os.close(dir_fd)

