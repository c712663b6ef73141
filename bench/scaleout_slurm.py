"""Benchmark: the demo's eval matrix through Slurm vs on this machine, in one run.

On the offline demo world (tiny Mistral base + 2 LoRA adapters, arc_challenge on local data,
fp32-lora so that every unit is the same work), with one subject per unit (3 units):
  - `hubkit eval --rerun --executor local --subjects-per-unit 1` (units in this process, in turn)
  - `hubkit eval --rerun --executor slurm --subjects-per-unit 1` (a job array on the one-node
    cluster of `.ci/slurm-cluster.sh`; each array task starts its own interpreter)
alternating, --repeat times each. Reported: the wall time of each, the Slurm run's extra time
per unit, and the load average before and after each run. With --cpus 1 per unit the node runs
as many array tasks at once as it has cores, so on a multi-core node Slurm may also finish first:
both numbers are written down, not a single ratio.

    .ci/slurm-cluster.sh start
    SLURM_CONF=/tmp/hubkit-slurm/slurm.conf python bench/scaleout_slurm.py --work /tmp/hubkit-bench-slurm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--partition", default=os.environ.get("HUBKIT_SLURM_PARTITION", "debug"))
    ap.add_argument("--cpus", type=int, default=1, help="CPUs per unit: 1 lets a 2-core node run two array tasks at once; the node's core count runs them one at a time (the pure overhead)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if not os.environ.get("SLURM_CONF"):
        raise SystemExit("set SLURM_CONF (e.g. /tmp/hubkit-slurm/slurm.conf after .ci/slurm-cluster.sh start)")

    from hubkit.demo.world import build_world, cached_world

    args.work.mkdir(parents=True, exist_ok=True)
    root = args.work / "world"
    if not root.exists():
        cache = os.environ.get("HUBKIT_TEST_WORLD_CACHE")
        world = cached_world(root, cache) if cache else build_world(root)
    manifest = root / "hubkit.yaml"
    data = yaml.safe_load(manifest.read_text())
    data["evals"]["demo"].update(strategies=["fp32-lora"], env="current")
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    base = [sys.executable, "-m", "hubkit", "eval", "-m", str(manifest), "--rerun", "--subjects-per-unit", "1", "--cpus", str(args.cpus), "--json"]
    runs = {"local": [], "slurm": []}
    for i in range(args.repeat):
        for kind in ("local", "slurm"):
            extra = ["--executor", kind] + (["--partition", args.partition, "--poll-interval", "0.5"] if kind == "slurm" else [])
            before = load()
            t0 = time.perf_counter()
            proc = subprocess.run([*base, *extra, "--runs-dir", str(args.work / f"runs-{kind}")], capture_output=True, text=True, env=env)
            dt = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"{kind} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
            runs[kind].append({"seconds": round(dt, 2), "load_before": before, "load_after": load()})
            print(f"{kind} #{i + 1}: {dt:.1f} s (load {before} -> {load()})", flush=True)
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    result = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "units": 3,
        "cpus_per_unit": args.cpus,
        "runs": runs,
        "median_seconds": med,
        "slurm_minus_local_per_unit_s": round((med["slurm"] - med["local"]) / 3, 2),
        "slurm_over_local": round(med["slurm"] / med["local"], 3),
    }
    args.out = args.out or Path(__file__).parent / "results" / f"scaleout_slurm_cpus{args.cpus}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
