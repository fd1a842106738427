"""KPI speed and memory on a scaled-up demo account, printed as ratios against the targets.

    python -m benchmarks.bench_kpis [--scale 320] [--weeks 26]

Generates the demo account at ``--scale`` (and at a tenth of it, for the linearity check)
with :func:`kpi_lib.demo.generate_account`, caches the stores under ``benchmarks/out/``, then
measures in a fresh process per size:

* ``load``: reading the columns the KPIs need from the store (the baseline);
* ``week``: all six KPI blocks for one week, from a fresh context (facts included);
* ``trends``: ``compute_trends`` over ``--weeks`` weeks, from a fresh context;
* ``peak``: the process's peak resident memory.

Targets: week ≤ 3 × load, trends ≤ 10 × load, 10 × the data ≤ 12 × the time, peak < 6 GB.
The stores are written with the store's own typed-row code (``kpi_lib.store``) straight into
the typed tables, skipping the raw JSON copy that a sync keeps, so that a million leads load
in minutes; the data are the generator's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
TODAY = date(2026, 11, 25)
AS_OF = "2026-11-25T12:00:00+03:00"
ACCOUNT = "bench"
CHUNK_ITEMS = 50_000
TARGETS = {"week": 3.0, "trends": 10.0, "linear": 12.0, "peak_gb": 6.0}


def build_store(scale: float) -> Path:
    """The cached store of the demo account at ``scale`` (generated on first use)."""
    from kpi_lib.demo import generate_account
    from kpi_lib.store import Store, page_items

    data_dir = OUT / f"kpis-scale-{scale:g}"
    done = data_dir / "complete.json"
    if done.exists():
        return data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    for old in data_dir.glob(f"{ACCOUNT}.duckdb*"):
        old.unlink()
    counts: dict[str, int] = {}
    buffers: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with Store.open(data_dir, ACCOUNT, read_only=False, create=True) as store:
        for entity, page in generate_account(seed=7, today=TODAY, scale=scale):
            items = page_items(entity, page)
            counts[entity] = counts.get(entity, 0) + len(items)
            buffers.setdefault(entity, []).extend(items)
            if len(buffers[entity]) >= CHUNK_ITEMS:
                store.append_typed(entity, buffers.pop(entity))
        for entity, items in buffers.items():
            store.append_typed(entity, items)
        store.mark_synced()
        store.con.execute("CHECKPOINT")
    counts["generate_s"] = round(time.perf_counter() - started, 1)
    done.write_text(json.dumps(counts))
    return data_dir


def measure(data_dir: Path, weeks: int) -> dict:
    """Time load / one week / trends on one store (run in a fresh process for a clean peak)."""
    from kpi_lib.config import load_settings
    from kpi_lib.kpis import compute_kpis, compute_trends, load_context, read_frames
    from kpi_lib.store import Store

    settings = load_settings(overrides={"data_dir": str(data_dir), "account": ACCOUNT, "week": "last",
                                        "as_of": AS_OF})
    t0 = time.perf_counter()
    with Store.open(data_dir, ACCOUNT) as store:
        frames = read_frames(store)
        rows = {name: len(frame) for name, frame in frames.items()}
    load = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = compute_kpis(load_context(settings, frames=frames))
    week = time.perf_counter() - t0
    t0 = time.perf_counter()
    trends = compute_trends(load_context(settings, frames=frames), weeks)
    trend = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return {"rows": rows, "load_s": load, "week_s": week, "trends_s": trend, "peak_gb": peak,
            "team_won": result["kpis"]["average_check"]["team"]["won"], "trend_rows": len(trends)}


def _measure_in_child(data_dir: Path, weeks: int) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_kpis", "--measure", str(data_dir),
                          "--weeks", str(weeks)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(name: str, value: float, target: float, unit: str = "×") -> str:
    verdict = "ok" if value <= target else "MISSED"
    return f"  {name:<38} {value:8.2f}{unit}   target ≤ {target:g}{unit}   {verdict}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=320.0, help="demo scale of the large account (320 ≈ 1M leads)")
    parser.add_argument("--weeks", type=int, default=26, help="weeks of trends (default 26)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, args.weeks)))
        return 0
    results = {}
    for scale in (args.scale / 10, args.scale):
        data_dir = build_store(scale)
        results[scale] = _measure_in_child(data_dir, args.weeks)
        r = results[scale]
        print(f"scale {scale:g}: rows {r['rows']['leads']:,} leads, {r['rows']['calls']:,} calls, "
              f"{r['rows']['tasks']:,} tasks, {r['rows']['events']:,} events (KPI event types)")
        print(f"  load {r['load_s']:.2f} s, one week {r['week_s']:.2f} s, {args.weeks} weeks {r['trends_s']:.2f} s, "
              f"peak {r['peak_gb']:.2f} GB")
        print(_line("one week / load", r["week_s"] / r["load_s"], TARGETS["week"]))
        print(_line(f"{args.weeks} weeks of trends / load", r["trends_s"] / r["load_s"], TARGETS["trends"]))
        print(_line("peak memory", r["peak_gb"], TARGETS["peak_gb"], " GB"))
    small, large = results[args.scale / 10], results[args.scale]
    grow = (large["week_s"] + large["trends_s"]) / (small["week_s"] + small["trends_s"])
    print(f"linearity (10 × the data): {grow:.2f} × the time")
    print(_line("time at 10 × the data / time at 1 ×", grow, TARGETS["linear"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
