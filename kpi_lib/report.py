"""The weekly run: execute the notebooks with papermill, render HTML, publish the week whole.

:func:`render_week` reads as a pipeline: resolve the week, take the week's lock, compute its
figures once (one snapshot, shared with the notebooks through the run's private folder),
execute every notebook in parallel on the pinned kernel, render each to HTML without code,
write the email charts, ``summary.json`` and the index into a staging folder, and publish
it as the week's new generation in one rename (:mod:`kpi_lib.publish`). Every file of the
generation carries the run id.

A failed notebook keeps its executed notebook (``notebooks/<name>.failed.ipynb``) and an
error page (``<name>.failed.html``); the previous good ``<name>.html`` of that week is carried
into the new generation, the index marks the failure and the run exits non-zero.  A full
disk stops the run with one :class:`~kpi_lib.errors.DiskFullError` and leaves the previous
generation as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import i18n
from .config import Settings
from .cardrun import CARD_NOTEBOOK, CardRun, execute_cards, split_cards, write_card_data
from .errors import DiskFullError, ReportError
from .files import disk_full, raise_if_disk_full
from .kpis.registry import NOTEBOOKS
from .log import logger, redact
from .publish import Stage, clean_stale, current_generation, new_run_id, publish_week, stage_week, week_lock
from .weekdata import (WeekData, build_week_data, context_weeks, give_up_week_data, mark_run_folder,
                       write_week_data)

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
MAX_JOBS = 6
# jsonschema builds an IRI grammar at import when rfc3987_syntax is installed (seconds of CPU);
# nbformat never checks IRIs, so the run does without that optional checker.
sys.modules.setdefault("rfc3987_syntax", None)


@dataclass
class NotebookRun:
    """The outcome of one notebook: ``html`` is relative to the week folder."""

    name: str
    title: str
    html: str
    ok: bool
    error: str | None = None
    seconds: float = 0.0
    previous: str | None = None
    notebook: str | None = None
    chart: dict[str, str] | None = None


@dataclass
class WeekRun:
    """The outcome of a weekly run."""

    week: str
    folder: Path
    run_id: str = ""
    notebooks: list[NotebookRun] = field(default_factory=list)
    error: str | None = None
    cards: list[CardRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and all(nb.ok for nb in self.notebooks) and all(c.ok for c in self.cards)


def pinned_kernel() -> str:
    """A kernelspec that starts this very interpreter: ``python3`` when it does, else one of ours.

    Ours is named after the interpreter's path and installed into ``sys.prefix`` once, so a
    kernelspec of another environment can never shadow it.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    own = "kpi-report-" + hashlib.sha1(sys.executable.encode()).hexdigest()[:8]
    aliases = ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}")
    for name in ("python3", own):
        try:
            argv = manager.get_kernel_spec(name).argv
        except NoSuchKernel:
            continue
        # jupyter_client starts a spec whose argv[0] is "python" with the calling interpreter
        if argv and (argv[0] in aliases or os.path.abspath(argv[0]) == os.path.abspath(sys.executable)):
            return name
    from ipykernel.kernelspec import install

    install(kernel_name=own, display_name=f"Python ({sys.prefix})", prefix=sys.prefix)
    return own


def load_run_context(settings: Settings, now: datetime | None = None):
    """The KPI context of the run and the settings every notebook receives.

    The week label is resolved and 'now' pinned (to the second), so a notebook re-run later
    from its parameters shows the same week as of the same moment.
    """
    from . import kpis

    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    # a bad setting or store stops the run here; the items of every week the figures read come at once
    ctx = kpis.load_context(settings, now=now, weeks=context_weeks(settings))
    pinned = settings.as_of or ctx.now.isoformat(timespec="seconds")
    ctx.settings = replace(settings, week=ctx.week.label, as_of=pinned)
    return ctx


@dataclass
class Execution:
    """A notebook as papermill left it: the notebook, the error if any, the seconds it took."""

    name: str
    source: Path
    nb: Any
    error: BaseException | None
    seconds: float


def kernel_manager_class(folder: Path):
    """A kernel manager that keeps its connection file in ``folder`` (the run's private folder),
    so a killed run leaves none in the temp folder: the next run removes the folder."""
    from jupyter_client.manager import AsyncKernelManager

    class RunKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.connection_file = str(folder / f"kernel-{uuid.uuid4().hex}.json")

    return RunKernelManager


def execute_notebook(name: str, source: Path, stage: Stage, parameters: dict[str, Any], kernel: str,
                     timeout: int, manager: type | None = None, **engine: Any) -> Execution:
    """Execute one notebook into ``stage.folder/notebooks`` on ``kernel`` within ``timeout`` seconds.

    The kernel works in the run's private folder, where the week's figures arrive.
    ``engine`` goes to papermill's engine (``km``: a running kernel manager to reuse).
    """
    import nbformat
    import papermill

    output = stage.folder / "notebooks" / f"{name}.ipynb"
    started = time.monotonic()
    deadline = started + timeout
    error, nb = None, None
    try:
        original = nbformat.read(source, as_version=4)
        original.metadata["kpi_report"] = {"run_id": stage.run_id}
        # No save after every cell (a full notebook validation each time): papermill writes the
        # notebook once at the end, and before raising on a cell error.
        nb = papermill.execute_notebook(
            original, str(output), parameters=parameters, kernel_name=kernel, progress_bar=False,
            log_output=False, request_save_on_cell_execute=False, start_timeout=120,
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # kernel chatter off; errors arrive as cell errors
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            kernel_manager_class=manager or kernel_manager_class(stage.work),
            resources={"metadata": {"path": str(stage.work)}}, **engine)
    except Exception as exc:  # any failure becomes an artefact, never a lost run
        error = exc
    seconds = time.monotonic() - started
    if disk_full(error):
        return Execution(name, source, None, error, seconds)
    if nb is None:
        try:
            nb = nbformat.read(output, as_version=4) if output.exists() else None
        except Exception:  # a notebook cut short by the failure itself
            nb = None
        nb = nb or prepared_notebook(source, parameters)
        nb.metadata["kpi_report"] = {"run_id": stage.run_id}
    return Execution(name, source, nb, error, seconds)


def finish_notebook(done: Execution, stage: Stage, timeout: int, lang: str, title: str | None = None) -> NotebookRun:
    """Render an executed notebook's HTML page, or its error page and failed notebook."""
    import nbformat

    from .render import render_error_page, render_notebook_html, save_team_chart

    raise_if_disk_full(done.error, stage.folder)
    name, nb, folder = done.name, done.nb, stage.folder
    title = title or (i18n.block_title(NOTEBOOKS[name], lang) if name in NOTEBOOKS else name)
    nb.metadata["title"] = title
    if done.error is None:
        try:
            (folder / f"{name}.html").write_text(render_notebook_html(nb, lang), encoding="utf-8")
            return NotebookRun(name, title, f"{name}.html", True, seconds=done.seconds,
                               notebook=f"notebooks/{name}.ipynb", chart=save_team_chart(nb, folder, lang))
        except Exception as exc:  # a page that cannot be rendered is a failed report, not a lost run
            raise_if_disk_full(exc, folder)
            done.error = exc
            (folder / f"{name}.html").unlink(missing_ok=True)
    output = folder / "notebooks" / f"{name}.ipynb"
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    nbformat.write(nb, failed)
    output.unlink(missing_ok=True)
    message = redact(describe_error(done.error, timeout))
    page = render_error_page(nb, title, message, lang, notebook=failed.relative_to(folder).as_posix(),
                             run_id=stage.run_id)
    (folder / f"{name}.failed.html").write_text(page, encoding="utf-8")
    logger.error("notebook %s failed: %s", name, message)
    return NotebookRun(name, title, f"{name}.failed.html", False, error=message, seconds=done.seconds,
                       notebook=failed.relative_to(folder).as_posix())


def prepared_notebook(source: Path, parameters: dict[str, Any]):
    """The parameterised notebook, not executed (the artefact when a kernel dies or times out)."""
    import nbformat
    import papermill

    try:
        return papermill.execute_notebook(str(source), None, parameters=parameters, prepare_only=True,
                                          progress_bar=False)
    except Exception:
        return nbformat.read(source, as_version=4)


def describe_error(error: BaseException, timeout: int) -> str:
    """One line for the index and summary: the exception's name and message."""
    ename = getattr(error, "ename", None) or type(error).__name__
    evalue = getattr(error, "evalue", None) or str(error).strip().splitlines()[-1:] or [""]
    evalue = evalue if isinstance(evalue, str) else evalue[0]
    if "Timeout" in ename or "timed out" in evalue.lower():
        return f"{ename}: the notebook did not finish within {timeout} s (raise --timeout)"
    return f"{ename}: {evalue}"[:500]


def render_week(settings: Settings, out_dir: str | os.PathLike, *, jobs: int | None = None, timeout: int = 600,
                notebooks_dir: str | os.PathLike | None = None, now: datetime | None = None) -> WeekRun:
    """Produce ``out_dir/<week>/`` for the settings' week (see the module docstring)."""
    out_dir = Path(out_dir).resolve()
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR).resolve()
    sources = [p for p in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")) if p.stem != CARD_NOTEBOOK]
    card_source = notebooks_dir / f"{CARD_NOTEBOOK}.ipynb"
    if not sources and not card_source.is_file():
        raise ReportError(f"no notebooks in {notebooks_dir}: run from the project folder or pass the notebooks folder")
    ctx = load_run_context(settings, now)  # the store is read here, once: the run's one snapshot
    week = ctx.week.label
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise_if_disk_full(exc, out_dir)
        raise
    run = WeekRun(week=week, folder=out_dir / week, run_id=new_run_id())
    from .render import write_reports_index

    try:
        with week_lock(out_dir, week):
            clean_stale(out_dir, held=week)
            with stage_week(out_dir, week, run.run_id) as stage:
                try:
                    data = execute_week(ctx, stage, sources, run, jobs, timeout, settings.lang,
                                        card_source if card_source.is_file() else None)
                    publish_stage(stage, run, data, ctx.settings)
                except OSError as exc:
                    raise_if_disk_full(exc, stage.folder)
                    raise
        write_reports_index(out_dir, settings.lang, run.run_id)
    except DiskFullError as exc:  # name the reports folder, not a staging file that is gone
        raise DiskFullError(out_dir if exc.path.startswith(str(out_dir)) else exc.path) from None
    return run


def execute_week(ctx, stage: Stage, sources: list[Path], run: WeekRun, jobs: int | None, timeout: int,
                 lang: str, card_source: Path | None = None) -> WeekData | None:
    """Run every notebook into the stage while the figures are computed, then the card notebook
    (``card_source``) once per manager; returns the figures."""
    clock = time.monotonic()
    run_settings = ctx.settings
    (stage.folder / "notebooks").mkdir()
    kernel = pinned_kernel()
    parameters = run_settings.notebook_parameters()
    workers = max(1, min(jobs or os.cpu_count() or 1, MAX_JOBS, max(1, len(sources))))
    logger.info("running %d notebooks for %s on %d workers (run %s)", len(sources), run.week, workers, run.run_id)
    mark_run_folder(stage.work, run.run_id)  # the kernels start while the figures are computed, then read them
    manager = kernel_manager_class(stage.work)
    data: WeekData | None = None
    # Kernels run on `workers` threads; pages are rendered on one more thread as each
    # notebook finishes, so a worker moves on to its next kernel at once.
    with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as renderer:
        futures = [pool.submit(execute_notebook, src.stem, src, stage, parameters, kernel, timeout, manager)
                   for src in sources]
        try:
            try:
                data = build_week_data(run_settings, ctx=ctx)
                write_week_data(data, stage.work)
                logger.debug("figures ready after %.2f s", time.monotonic() - clock)
            except Exception as exc:  # the notebooks show the same failure; the index says so
                raise_if_disk_full(exc, stage.work)
                data, run.error = None, redact(f"{type(exc).__name__}: {exc}")
                logger.error("could not compute the week's figures: %s", run.error)
                give_up_week_data(stage.work, run.error)
            # the cards need the figures (who gets one), so they queue behind the reports
            names = dict(write_card_data(data, stage.folder)) if data is not None and card_source else {}
            futures += [pool.submit(execute_cards, execute_notebook, group, card_source, stage, parameters,
                                    kernel, timeout) for group in split_cards(list(names), workers)]
            pages = {}
            for future in as_completed(futures):
                result = future.result()  # one report, or a kernel's share of the cards
                for done in result if isinstance(result, list) else [result]:
                    card = names.get(done.name.partition("managers/")[2])
                    title = i18n.text("card.title", lang, name=card) if card is not None else None
                    pages[done.name] = renderer.submit(finish_notebook, done, stage, timeout, lang, title)
            run.notebooks = [pages[src.stem].result() for src in sources]
            run.cards = [card_run(pages[f"managers/{m}"].result(), m, names[m]) for m in names]
        except BaseException as exc:
            for future in futures:
                future.cancel()
            give_up_week_data(stage.work, run.error or f"the run stopped ({type(exc).__name__})")
            raise
    logger.debug("notebooks done after %.2f s", time.monotonic() - clock)
    return data


def card_run(page: NotebookRun, manager: str, name: str) -> CardRun:
    """The card's outcome from its rendered page."""
    return CardRun(manager=manager, name=name, html=page.html, ok=page.ok, data=f"managers/{manager}.json",
                   error=page.error, seconds=page.seconds)


def publish_stage(stage: Stage, run: WeekRun, data: WeekData | None, settings: Settings) -> Path:
    """Write ``summary.json`` and the index into the stage, keep the last good page of each
    failed report, and publish the stage as the week's generation."""
    from .render import write_index, write_summary

    previous = current_generation(stage.out_dir, stage.week)
    for nb in run.notebooks:
        if not nb.ok:
            nb.previous = keep_previous(previous, stage.folder, nb.name)
    if data is None and previous is not None:  # no figures, so no card ran: each keeps its last good page
        kept = [keep_previous(previous, stage.folder, f"managers/{page.stem}")
                for page in sorted((previous / "managers").glob("*.html")) if "." not in page.stem]
        if kept:
            logger.warning("the week's figures failed: the week's last good %d card(s) are kept", len(kept))
    for card in run.cards:
        if not card.ok:
            card.previous = keep_previous(previous, stage.folder, f"managers/{card.manager}")
            if card.previous:
                logger.warning("card of %s (%s) failed: the week's last good card is kept", card.name, card.manager)
    charts = [nb.chart for nb in run.notebooks if nb.chart]
    generated = datetime.now(timezone.utc)
    write_summary(stage.folder, run, data, settings, charts, generated)
    write_index(stage.folder, run, data, settings, generated)
    return publish_week(stage)


def keep_previous(previous: Path | None, folder: Path, name: str) -> str | None:
    """Carry the last good page ``<name>.html`` (and its executed notebook) of the week's
    previous generation into ``folder``; the page's path, or None when there is none."""
    page = f"{name}.html"
    if previous is None or not (previous / page).is_file():
        return None
    for kept in (page, f"notebooks/{name}.ipynb"):
        if (previous / kept).is_file():
            (folder / kept).parent.mkdir(parents=True, exist_ok=True)
            copy_file(previous / kept, folder / kept)
    return page


def copy_file(source: Path, dest: Path) -> None:
    """A hard link when possible (same disk, no space used), else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
