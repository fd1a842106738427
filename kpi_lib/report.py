"""The weekly run: execute the notebooks with papermill, render HTML, write the week's index.

:func:`render_week` reads as a pipeline: resolve the week, compute its figures once (shared
with the notebooks through a cache file in their working folder), execute every notebook in
parallel on the pinned kernel, render each to HTML without code, write the email charts,
``summary.json`` and the index pages into a staging folder, and move them into
``reports/<week>/`` file by file with ``os.replace`` — the index last.

A failed notebook keeps its executed notebook (``notebooks/<name>.failed.ipynb``) and an
error page (``<name>.failed.html``); the previous good ``<name>.html`` of that week is left
in place, the index marks the failure and the run exits non-zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from . import i18n
from .config import Settings
from .cardrun import CARD_NOTEBOOK, CardRun, execute_cards, split_cards, write_card_data
from .errors import ReportError
from .kpis.registry import NOTEBOOKS
from .log import logger, redact
from .weekdata import CACHE_NAME, PENDING_NAME, WeekData, build_week_data, write_week_data

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
    ctx = kpis.load_context(settings, now=now)  # a bad setting or store stops the run here
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


def execute_notebook(name: str, source: Path, staging: Path, parameters: dict[str, Any], kernel: str,
                     timeout: int, **engine: Any) -> Execution:
    """Execute one notebook into ``staging/notebooks`` on ``kernel`` within ``timeout`` seconds.

    ``engine`` goes to papermill's engine (``km``: a running kernel manager to reuse).
    """
    import nbformat
    import papermill

    output = staging / "notebooks" / f"{name}.ipynb"
    started = time.monotonic()
    deadline = started + timeout
    error, nb = None, None
    try:
        # No save after every cell (a full notebook validation each time): papermill writes the
        # notebook once at the end, and before raising on a cell error.
        nb = papermill.execute_notebook(
            str(source), str(output), parameters=parameters, kernel_name=kernel, progress_bar=False,
            log_output=False, request_save_on_cell_execute=False, start_timeout=120,
            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],  # kernel chatter off; errors arrive as cell errors
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            resources={"metadata": {"path": str(staging)}}, **engine)
    except Exception as exc:  # any failure becomes an artefact, never a lost run
        error = exc
    seconds = time.monotonic() - started
    if nb is None:
        nb = nbformat.read(output, as_version=4) if output.exists() else prepared_notebook(source, parameters)
    return Execution(name, source, nb, error, seconds)


def finish_notebook(done: Execution, staging: Path, timeout: int, lang: str, title: str | None = None) -> NotebookRun:
    """Render an executed notebook's HTML page, or its error page and failed notebook."""
    import nbformat

    from .render import render_error_page, render_notebook_html, save_team_chart

    name, nb = done.name, done.nb
    title = title or (i18n.block_title(NOTEBOOKS[name], lang) if name in NOTEBOOKS else name)
    nb.metadata["title"] = title
    if done.error is None:
        try:
            (staging / f"{name}.html").write_text(render_notebook_html(nb, lang), encoding="utf-8")
            return NotebookRun(name, title, f"{name}.html", True, seconds=done.seconds,
                               notebook=f"notebooks/{name}.ipynb", chart=save_team_chart(nb, staging, lang))
        except Exception as exc:  # a page that cannot be rendered is a failed report, not a lost run
            done.error = exc
            (staging / f"{name}.html").unlink(missing_ok=True)
    output = staging / "notebooks" / f"{name}.ipynb"
    failed = output.with_name(f"{output.stem}.failed.ipynb")
    nbformat.write(nb, failed)
    output.unlink(missing_ok=True)
    message = redact(describe_error(done.error, timeout))
    page = render_error_page(nb, title, message, lang, notebook=failed.relative_to(staging).as_posix())
    (staging / f"{name}.failed.html").write_text(page, encoding="utf-8")
    logger.error("notebook %s failed: %s", name, message)
    return NotebookRun(name, title, f"{name}.failed.html", False, error=message, seconds=done.seconds,
                       notebook=failed.relative_to(staging).as_posix())


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
    from .render import write_index, write_reports_index, write_summary

    out_dir = Path(out_dir).resolve()
    notebooks_dir = Path(notebooks_dir or NOTEBOOKS_DIR).resolve()
    sources = [p for p in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")) if p.stem != CARD_NOTEBOOK]
    card_source = notebooks_dir / f"{CARD_NOTEBOOK}.ipynb"
    if not sources and not card_source.is_file():
        raise ReportError(f"no notebooks in {notebooks_dir}: run from the project folder or pass the notebooks folder")
    clock = time.monotonic()
    ctx = load_run_context(settings, now)
    run_settings, week = ctx.settings, ctx.week.label
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / week
    run = WeekRun(week=week, folder=final)
    with FileLock(str(out_dir / f".{week}.lock")):
        for stale in out_dir.glob(f".{week}.staging-*"):  # left by a run that was killed (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{week}.staging-", dir=out_dir))
        try:
            (staging / "notebooks").mkdir()
            kernel = pinned_kernel()
            parameters = run_settings.notebook_parameters()
            workers = max(1, min(jobs or os.cpu_count() or 1, MAX_JOBS, len(sources)))
            logger.info("running %d notebooks for %s on %d workers", len(sources), week, workers)
            pending = staging / PENDING_NAME
            pending.touch()  # the kernels start while the figures are computed, then read them
            data: WeekData | None = None
            # Kernels run on `workers` threads; pages are rendered on one more thread as each
            # notebook finishes, so a worker moves on to its next kernel at once.
            with ThreadPoolExecutor(max_workers=workers) as pool, ThreadPoolExecutor(max_workers=1) as renderer:
                futures = [pool.submit(execute_notebook, src.stem, src, staging, parameters, kernel, timeout)
                           for src in sources]
                try:
                    data = build_week_data(run_settings, ctx=ctx)
                    write_week_data(data, staging)
                    logger.debug("figures ready after %.2f s", time.monotonic() - clock)
                except Exception as exc:  # the notebooks show the same failure; the index says so
                    run.error = redact(f"{type(exc).__name__}: {exc}")
                    logger.error("could not compute the week's figures: %s", run.error)
                finally:
                    pending.unlink(missing_ok=True)
                # the cards need the figures (who gets one), so they queue behind the reports
                names = dict(write_card_data(data, staging)) if data is not None and card_source.is_file() else {}
                futures += [pool.submit(execute_cards, execute_notebook, group, card_source, staging, parameters,
                                        kernel, timeout) for group in split_cards(list(names), workers)]
                pages = {}
                for future in as_completed(futures):
                    result = future.result()  # one report, or a kernel's share of the cards
                    for done in result if isinstance(result, list) else [result]:
                        card = names.get(done.name.partition("managers/")[2])
                        title = i18n.text("card.title", settings.lang, name=card) if card is not None else None
                        pages[done.name] = renderer.submit(finish_notebook, done, staging, timeout, settings.lang,
                                                           title)
                run.notebooks = [pages[src.stem].result() for src in sources]
                run.cards = [card_run(pages[f"managers/{m}"].result(), m, names[m]) for m in names]
            logger.debug("notebooks done after %.2f s", time.monotonic() - clock)
            charts = [nb.chart for nb in run.notebooks if nb.chart]
            for nb in run.notebooks:
                if not nb.ok and (final / f"{nb.name}.html").exists():
                    nb.previous = f"{nb.name}.html"
            generated = datetime.now(timezone.utc)
            write_summary(staging, run, data, run_settings, charts, generated)
            write_index(staging, run, data, run_settings, generated)
            publish(staging, final, [nb.name for nb in run.notebooks if nb.ok]
                    + [f"managers/{card.manager}" for card in run.cards if card.ok])
            write_reports_index(out_dir, settings.lang)
            logger.debug("published after %.2f s", time.monotonic() - clock)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return run


def card_run(page: NotebookRun, manager: str, name: str) -> CardRun:
    """The card's outcome from its rendered page."""
    return CardRun(manager=manager, name=name, html=page.html, ok=page.ok, data=f"managers/{manager}.json",
                   error=page.error, seconds=page.seconds)


def publish(staging: Path, final: Path, succeeded: list[str]) -> None:
    """Move every staged file into ``final`` with ``os.replace``; the index and summary go last."""
    last = [staging / "summary.json", staging / "index.html"]
    files = [p for p in sorted(staging.rglob("*")) if p.is_file() and p.name != CACHE_NAME and p not in last]
    for path in files + [p for p in last if p.exists()]:
        dest = final / path.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    for name in succeeded:  # a good run clears the marks of an earlier failure
        (final / f"{name}.failed.html").unlink(missing_ok=True)
        (final / "notebooks" / f"{name}.failed.ipynb").unlink(missing_ok=True)


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.chmod(tmp, 0o644)  # readable like any other report file (mkstemp makes it private)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def run_command(settings: Settings, out_dir: str | os.PathLike, jobs: int | None = None, timeout: int = 600,
                notebooks_dir: str | os.PathLike | None = None) -> int:
    """``kpi-report run``: render the week; 0 when every notebook succeeded, 1 otherwise."""
    started = time.monotonic()
    run = render_week(settings, out_dir, jobs=jobs, timeout=timeout, notebooks_dir=notebooks_dir)
    for nb in run.notebooks:
        state = "ok" if nb.ok else f"FAILED ({nb.error})"
        print(f"{nb.name}: {state} [{nb.seconds:.1f} s]")
    if run.cards:
        print(f"manager cards: {sum(c.ok for c in run.cards)} of {len(run.cards)} ok "
              f"[{sum(c.seconds for c in run.cards):.1f} s]")
    for card in run.cards:
        if not card.ok:
            print(f"managers/{card.manager}: FAILED ({card.error})")
    if run.error:
        print(f"figures: FAILED ({run.error})", file=sys.stderr)
    print(f"{run.folder / 'index.html'} written in {time.monotonic() - started:.1f} s")
    if not run.ok:
        failed = [nb.name for nb in run.notebooks if not nb.ok] + [f"managers/{c.manager}" for c in run.cards
                                                                    if not c.ok]
        print(f"kpi-report run: {len(failed)} report(s) failed: {', '.join(failed) or 'figures'}; "
              f"see {run.folder / 'index.html'}", file=sys.stderr)
        return 1
    return 0


def summary_notebooks(run: WeekRun) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(nb).items() if k in ("name", "title", "html", "ok", "error")}
            for nb in run.notebooks]


def load_summary(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
