"""A week's reports, published whole: built in a staging folder, switched over with one rename.

Layout of the reports folder::

    reports/index.html                          every week, newest first
    reports/2026-W47 -> .weeks/2026-W47/<run>   the week's current generation (a relative link)
    reports/.weeks/2026-W47/<run>/              one generation: every file of one run
    reports/.weeks/2026-W47/.staging-<run>/     a generation being built
    reports/.weeks/2026-W47/.work-<run>/        the run's private folder (0700): figures, kernel files
    reports/.2026-W47.lock                      while a run or a send holds the week (removed after)

A reader, a web server or a crash sees the old generation or the new one, never a mix:
:func:`publish_week` renames the staging folder into a generation, then replaces the
week's link in one ``os.replace``.  The run id names the generation and is written into
every file of it.  :func:`clean_stale` removes what a killed run left behind (staging and
private folders, generations no link points to) for every week whose lock is free.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .errors import LockBusyError
from .files import fsync_dir, hold_lock, make_private_dir, raise_if_disk_full

WEEKS = ".weeks"


def new_run_id(now: datetime | None = None) -> str:
    """A run id that sorts by time and is unique: ``20261123T070001Z-3f9a1c``."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def week_lock(out_dir: Path, week: str, what: str = "run", timeout: float | None = None):
    """The week's lock (held by a run while it builds and publishes, and by a send)."""
    return hold_lock(Path(out_dir) / f".{week}.lock", f"{what} of {week}", timeout=timeout)


def current_generation(out_dir: Path, week: str) -> Path | None:
    """The folder ``reports/<week>`` stands for now (resolved), or None when the week was never built."""
    link = Path(out_dir) / week
    if link.is_symlink():
        target = link.resolve()
        return target if target.is_dir() else None
    return link if link.is_dir() else None


@dataclass(frozen=True)
class Stage:
    """A generation being built: ``folder`` is published, ``work`` (0700) is the run's own."""

    out_dir: Path
    week: str
    run_id: str
    folder: Path
    work: Path


@contextlib.contextmanager
def stage_week(out_dir: Path, week: str, run_id: str) -> Iterator[Stage]:
    """Make a staging folder and a private folder for one run of ``week`` (the caller holds the
    week's lock); both are removed when the block ends, published or not."""
    base = Path(out_dir) / WEEKS / week
    folder, work = base / f".staging-{run_id}", base / f".work-{run_id}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
        work = make_private_dir(base, f".work-{run_id}-")
    except OSError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise_if_disk_full(exc, base)
        raise
    try:
        yield Stage(Path(out_dir), week, run_id, folder, work)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def publish_week(stage: Stage) -> Path:
    """Make the staged folder the week's current generation in one rename; returns it.

    Generations the link no longer points to are removed afterwards.
    """
    base = stage.folder.parent
    generation = base / stage.run_id
    link = stage.out_dir / stage.week
    try:
        os.rename(stage.folder, generation)
        fsync_dir(base)
        if link.exists() and not link.is_symlink():  # a week folder from before generations
            os.rename(link, base / f"{stage.run_id}-before")
        temporary = stage.out_dir / f".{stage.week}.link-{stage.run_id}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        os.symlink(os.path.join(WEEKS, stage.week, stage.run_id), temporary)
        os.replace(temporary, link)
        fsync_dir(stage.out_dir)
    except OSError as exc:
        raise_if_disk_full(exc, link)
        raise
    _remove_unlinked(stage.out_dir, stage.week)
    return generation


def _remove_unlinked(out_dir: Path, week: str) -> None:
    """Remove every entry of the week's generations folder but the current generation."""
    base = out_dir / WEEKS / week
    current = current_generation(out_dir, week)
    for entry in base.iterdir() if base.is_dir() else ():
        if current is None or entry.resolve() != current:
            shutil.rmtree(entry, ignore_errors=True)
    for temporary in out_dir.glob(f".{week}.link-*"):
        temporary.unlink(missing_ok=True)
    for old in out_dir.glob(f".{week}.staging-*"):  # the staging folders of earlier versions
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(out_dir: Path, held: str | None = None) -> None:
    """Remove what killed runs left, for ``held`` (whose lock the caller holds) and every week
    whose lock is free: staging and private folders, unlinked generations, link temporaries."""
    out_dir = Path(out_dir)
    weeks = {p.name for p in (out_dir / WEEKS).iterdir()} if (out_dir / WEEKS).is_dir() else set()
    weeks |= {p.name[1:].split(".staging-")[0] for p in out_dir.glob(".*.staging-*")}
    weeks |= {p.name[1:].split(".link-")[0] for p in out_dir.glob(".*.link-*")}
    for week in sorted(weeks):
        if week == held:
            _remove_unlinked(out_dir, week)
            continue
        try:
            with week_lock(out_dir, week, what="cleanup", timeout=0):
                _remove_unlinked(out_dir, week)
        except LockBusyError:
            continue  # another run or send works on that week
