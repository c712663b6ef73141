"""Benchmark: what `hubkit eval` costs on top of lm-eval itself.

On the offline demo world (tiny Mistral + LoRA, lm-eval's arc_challenge on local data), in one run:
  1. cold `hubkit eval` (forced --rerun) vs the very lm-eval command it recorded, run directly;
     alternating, --repeat times each; ratio of medians (target <= 1.05)
  2. a cached `hubkit eval` (identical run recorded) vs the cold one (target <= 0.02)
  3. the overhead of a warm pinned environment: resolving and probing an existing uv env
     (target <= 1 s); the env is created first if needed (not timed)

    python bench/eval_overhead.py --work /tmp/hubkit-bench-eval [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

PINS = {"lm-eval": "==0.4.13", "transformers": "==5.23.0", "peft": "==0.21.2"}


def timed(cmd, **kw) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stderr[-3000:]}")
    return dt, proc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubkit-bench-eval"))
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", HUBKIT_HOME=str(args.work / "home"), TOKENIZERS_PARALLELISM="false")
    from hubkit.demo.world import build_world

    world = build_world(args.work / "world")
    data = yaml.safe_load(world.paths.manifest.read_text())
    demo = data["evals"]["demo"]
    data["evals"] = {
        "bench": {**demo, "strategies": ["fp32-lora"], "env": "current", "artifacts": ["lora-full"], "include_base": False},
        "pinned": {**demo, "strategies": ["fp32-lora"], "env": "pinned", "pins": PINS, "artifacts": ["lora-full"], "include_base": False},
    }
    manifest = world.paths.root / "hubkit-bench.yaml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    hubkit = [sys.executable, "-m", "hubkit"]

    cold, direct, command = [], [], None
    for i in range(args.repeat):
        dt, proc = timed([*hubkit, "eval", "-m", str(manifest), "--setup", "bench", "--rerun", "--json"])
        cold.append(dt)
        run = json.loads(proc.stdout)["runs"][0]
        prov = json.loads((Path(run["path"]) / "provenance.json").read_text())
        command = prov["command"]
        argv = shlex.split(command)
        argv[argv.index("--output_path") + 1] = str(args.work / f"direct-{i}")
        dt, _ = timed(argv, cwd=world.paths.root)
        direct.append(dt)
        print(f"run {i + 1}: hubkit eval {cold[-1]:.2f}s, lm-eval direct {direct[-1]:.2f}s", file=sys.stderr)
    cached = []
    for _ in range(args.repeat):
        dt, proc = timed([*hubkit, "eval", "-m", str(manifest), "--setup", "bench", "--json"])
        assert json.loads(proc.stdout)["runs"][0]["cached"]
        cached.append(dt)

    from hubkit.eval import envs

    t0 = time.perf_counter()
    env = envs.pinned_env(PINS, needs_4bit=False)
    create_s = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        again = envs.pinned_env(PINS, needs_4bit=False)
        warm.append(time.perf_counter() - t0)
        assert not again.created and again.key == env.key
    result = {
        "command": command,
        "hubkit_cold_s": cold, "lm_eval_direct_s": direct, "hubkit_cached_s": cached,
        "overhead_ratio": round(statistics.median(cold) / statistics.median(direct), 3),
        "cached_over_cold": round(statistics.median(cached) / statistics.median(cold), 3),
        "pinned_env_first_s": round(create_s, 2), "pinned_env_created": env.created, "pinned_env_warm_s": [round(w, 3) for w in warm],
        "cpu": os.cpu_count(),
    }
    (args.work / "eval_results.json").write_text(json.dumps(result, indent=2))
    print("| measure | value |\n|---|---|")
    print(f"| hubkit eval, cold (median of {args.repeat}) | {statistics.median(cold):.2f} s |")
    print(f"| same lm-eval command, direct (median) | {statistics.median(direct):.2f} s |")
    print(f"| ratio hubkit / direct | {result['overhead_ratio']} |")
    print(f"| hubkit eval, cached (median) | {statistics.median(cached):.2f} s |")
    print(f"| ratio cached / cold | {result['cached_over_cold']} |")
    print(f"| warm pinned env: resolve + probe (median) | {statistics.median(warm):.3f} s |")
    print(f"| pinned env, first call ({'created' if env.created else 'already existed'}) | {create_s:.1f} s |")


if __name__ == "__main__":
    main()
