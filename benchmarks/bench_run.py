"""The weekly run against its floor: starting the same kernels with the same imports.

    python -m benchmarks.bench_run [--rounds 3] [--data-dir DIR]

The floor is the time to execute, on the same worker pool and the same pinned kernel, one
trivial notebook per report notebook that holds the same parameters cell and the same import
cell and does nothing else, plus one trivial card notebook per kernel the managers' cards
run on.  The full run is ``kpi_lib.report.render_week`` on the demo
account (built into a temporary folder unless ``--data-dir`` is given).  Rounds alternate
floor and run, so a noisy shared machine hits both alike; the figures are printed side by
side with their ratio (target: at most 1.5): the median of the rounds, their CPU time, and
the fastest of each (the least disturbed when the machine is shared).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import papermill  # imported before either timing

from kpi_lib.config import load_settings
from kpi_lib.card import carded_managers
from kpi_lib.cardrun import CARD_NOTEBOOK, split_cards
from kpi_lib.report import MAX_JOBS, NOTEBOOKS_DIR, pinned_kernel, render_week
from kpi_lib.weekdata import build_week_data

AS_OF = "2026-11-25T12:00:00+03:00"


def floor_notebook(source: Path) -> nbformat.NotebookNode:
    """``source`` cut to its parameters cell and its import line: the same start, no work."""
    nb = nbformat.read(source, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    imports = "\n".join(line for c in nb.cells if c.cell_type == "code"
                        for line in c.source.splitlines() if line.startswith(("import ", "from ")))
    nb.cells = [params, nbformat.v4.new_code_cell(imports)]
    return nb


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the kernels)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_floor(folder: Path, parameters: dict, jobs: int, card_kernels: int) -> tuple[float, float]:
    """Wall and CPU seconds to execute the trivial notebooks in parallel, as the run does."""
    kernel = pinned_kernel()
    sources = [p for p in sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb")) if p.stem != CARD_NOTEBOOK]
    workers = max(1, min(jobs, MAX_JOBS, len(sources)))
    trivial = []
    for src in sources + [NOTEBOOKS_DIR / f"{CARD_NOTEBOOK}.ipynb"] * card_kernels:
        path = folder / f"floor_{len(trivial)}_{src.name}"
        nbformat.write(floor_notebook(src), path)
        trivial.append(path)
    started, cpu = time.perf_counter(), cpu_seconds()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(lambda p: papermill.execute_notebook(
            str(p), str(p.with_suffix(".out.ipynb")), parameters=parameters, kernel_name=kernel,
            progress_bar=False, resources={"metadata": {"path": str(folder)}}), trivial))
    return time.perf_counter() - started, cpu_seconds() - cpu


def time_run(settings, out_dir: Path, jobs: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), cpu_seconds()
    with contextlib.redirect_stdout(io.StringIO()):
        run = render_week(settings, out_dir, jobs=jobs, timeout=600)
    if not run.ok:
        raise SystemExit(f"the weekly run failed: see {out_dir}")
    return time.perf_counter() - started, cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, help="an existing data folder (default: build the demo)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        tmp = Path(tmp)
        data_dir = args.data_dir
        if data_dir is None:
            from datetime import date

            from kpi_lib.demo import build_demo

            data_dir = tmp / "data"
            build_demo(data_dir, account="demo", seed=7, today=date(2026, 11, 25))
        settings = load_settings(overrides={"data_dir": str(data_dir), "as_of": AS_OF})
        parameters = dict(settings.notebook_parameters(), week="2026-W47")
        cards = carded_managers(build_week_data(load_settings(overrides={**parameters, "data_dir": str(data_dir)})))
        card_kernels = len(split_cards(cards, max(1, min(args.jobs, MAX_JOBS))))
        print(f"{len(cards)} manager cards on {card_kernels} kernel(s)")
        floors, runs = [], []
        for i in range(args.rounds):
            floors.append(time_floor(Path(tempfile.mkdtemp(dir=tmp)), parameters, args.jobs, card_kernels))
            runs.append(time_run(settings, tmp / f"reports-{i}", args.jobs))
            (fw, fc), (rw, rc) = floors[-1], runs[-1]
            print(f"round {i + 1}: floor {fw:6.2f} s (cpu {fc:6.2f} s)   run {rw:6.2f} s (cpu {rc:6.2f} s)"
                  f"   ratio {rw / fw:.2f}")
        floor = statistics.median(w for w, _ in floors)
        run = statistics.median(w for w, _ in runs)
        floor_cpu = statistics.median(c for _, c in floors)
        run_cpu = statistics.median(c for _, c in runs)
        print(f"{'median':9}{'floor (kernels + imports)':>28}{'weekly run':>14}{'ratio':>8}")
        print(f"{'wall':9}{floor:>26.2f} s{run:>12.2f} s{run / floor:>8.2f}   (target <= 1.50; {args.jobs} jobs)")
        print(f"{'cpu':9}{floor_cpu:>26.2f} s{run_cpu:>12.2f} s{run_cpu / floor_cpu:>8.2f}")
        best_floor, best_run = min(w for w, _ in floors), min(w for w, _ in runs)
        print(f"{'best':9}{best_floor:>26.2f} s{best_run:>12.2f} s{best_run / best_floor:>8.2f}"
              "   (fastest of each: the least disturbed by other work on the machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
