"""The demo account: build and load times, and whether generation streams at scale.

    python -m benchmarks.bench_demo [--scale 10]

Measures, each against its target as a ratio (below 1 is within target):

* **build**: ``kpi-report demo`` (generate + ingest through the store) at scale 1, against 30 s;
* **load**: ``load_frames`` of that store, against 5 s;
* **streaming**: generation alone at scale 1 and at ``--scale``, each in a fresh process —
  the cost per lead (target: the big run costs at most 1.5× per lead) and the peak memory
  (target: at most 1.5× the small run's, i.e. flat: items are not all held in memory).

Nothing here asserts a time: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kpi_lib.demo import build_demo  # noqa: E402
from kpi_lib.store import load_frames  # noqa: E402

TODAY = date(2026, 11, 25)
_GENERATE = """
import json, sys, time
from datetime import date
from kpi_lib.demo import generate_account
started, leads = time.perf_counter(), 0
for entity, page in generate_account(seed=7, today=date(2026, 11, 25), scale=float(sys.argv[1])):
    if entity == "leads":
        leads += len(page["_embedded"]["leads"])
seconds = time.perf_counter() - started
status = open("/proc/self/status").read().split("VmHWM:")[1]
print(json.dumps({"leads": leads, "seconds": seconds, "peak_mb": int(status.split()[0]) / 1024}))
"""


def measure_generation(scale: float) -> dict:
    """Generate the account at ``scale`` in a fresh process: leads, seconds and peak memory."""
    out = subprocess.run([sys.executable, "-c", _GENERATE, str(scale)], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout)


def row(name: str, value: float, target: float, unit: str) -> None:
    print(f"{name:<28} {value:>10.2f} {unit:<8} target {target:>8.2f} {unit:<8} ratio {value / target:5.2f}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=10.0, help="the big generation run's scale (default 10)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        build_demo(tmp, today=TODAY)
        row("build (scale 1)", time.perf_counter() - started, 30.0, "s")
        started = time.perf_counter()
        frames = load_frames(tmp, "demo")
        row("load_frames", time.perf_counter() - started, 5.0, "s")
        print(f"{'':<28} {len(frames['leads'])} leads, {len(frames['calls'])} calls, {len(frames['tasks'])} tasks, "
              f"{len(frames['events'])} events")
    small, big = measure_generation(1.0), measure_generation(args.scale)
    per_lead = [run["seconds"] / run["leads"] * 1000 for run in (small, big)]
    print(f"generation: scale 1 {small['leads']} leads in {small['seconds']:.1f} s, {small['peak_mb']:.0f} MB; "
          f"scale {args.scale:g} {big['leads']} leads in {big['seconds']:.1f} s, {big['peak_mb']:.0f} MB")
    row(f"ms per lead, scale {args.scale:g}", per_lead[1], 1.5 * per_lead[0], "ms")
    row(f"peak memory, scale {args.scale:g}", big["peak_mb"], 1.5 * small["peak_mb"], "MB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
