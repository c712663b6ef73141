"""Benchmark: `hubkit eval` of a base + N adapters vs the recorded lm-eval commands run one by one.

On the offline demo world (tiny Mistral base + 2 LoRA adapters, lm-eval's arc_challenge on
local data), in one run, for each setup below:
  1. the baseline's commands: `hubkit eval --separate` once (not timed), which records for each
     subject the process lm-eval runs for it alone (`python -m lm_eval ...`, or for 4-bit on
     transformers 5 the one-subject runner call);
  2. `hubkit eval --rerun` (one process per load path: lm-eval imported and the base loaded once)
     vs those recorded commands run one by one from a shell, alternating, --repeat times each;
     the ratio of the medians (goal of issue #18: <= 0.6 at N = 2);
  3. the per-sample results of the two paths, compared (they must be identical).
The load average is read before and after every timed run and written down with the result.

Setups: `fp32` (fp32-lora: the baselines are plain `python -m lm_eval` commands) and `demo`
(the demo's own setup: 4bit-lora, merged-fp16 fallback).

    python bench/eval_multi.py --work /tmp/hubkit-bench-multi [--repeat 2] [--setups fp32,demo]
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


def timed(cmd, **kw) -> tuple[float, subprocess.CompletedProcess, dict]:
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return dt, proc, {"before": before, "after": load()}


def samples(run_path: Path) -> list:
    rows = []
    for f in sorted(run_path.rglob("samples_*.jsonl")):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            rows.append((r["doc_hash"], r["resps"], r["filtered_resps"], r.get("acc"), r.get("acc_norm")))
    return rows


def bench_setup(name: str, manifest: Path, root: Path, work: Path, repeat: int) -> dict:
    hubkit = [sys.executable, "-m", "hubkit", "eval", "-m", str(manifest), "--setup", name, "--json"]
    _, proc, _ = timed([*hubkit, "--separate", "--runs-dir", str(work / f"{name}-separate")])
    baseline = json.loads(proc.stdout)["runs"]
    commands = {}
    for run in baseline:
        record = json.loads((Path(run["path"]) / "record.json").read_text())
        commands[run["subject"]] = record["reproduce"]
    shared_s, direct_s, loads, strategies = [], [], [], {}
    for i in range(repeat):
        out = work / f"{name}-shared-{i}"
        dt, proc, ld = timed([*hubkit, "--rerun", "--runs-dir", str(out)])
        shared_s.append(dt)
        runs = json.loads(proc.stdout)["runs"]
        strategies = {r["subject"]: r["strategy"] for r in runs}
        loads.append({"what": f"hubkit eval #{i + 1}", **ld})
        total = 0.0
        for subject, line in commands.items():
            dest = work / f"{name}-direct-{i}-{subject}"
            dt, _, ld = timed(["bash", "-c", line.replace(" reproduced", f" {dest}").replace("--output_path reproduced", f"--output_path {dest}")], cwd=root)
            total += dt
            loads.append({"what": f"{subject} direct #{i + 1}", **ld})
        direct_s.append(total)
        print(f"{name} run {i + 1}: hubkit eval {shared_s[-1]:.1f}s, {len(commands)} recorded commands one by one {total:.1f}s", file=sys.stderr)
        if i == 0:
            for run in runs:
                direct = samples(work / f"{name}-direct-0-{run['subject']}")
                assert direct and samples(Path(run["path"])) == direct, f"{name}/{run['subject']}: per-sample results differ"
    return {
        "subjects": sorted(commands), "strategies": strategies, "commands": commands,
        "hubkit_eval_s": [round(x, 2) for x in shared_s], "recorded_commands_s": [round(x, 2) for x in direct_s],
        "ratio": round(statistics.median(shared_s) / statistics.median(direct_s), 3),
        "per_sample_identical": True, "load": loads,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubkit-bench-multi"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--setups", default="fp32,demo")
    ap.add_argument("--out", type=Path, help="also write the JSON result here")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.update(HF_HUB_OFFLINE="1", HUBKIT_HOME=str(args.work / "home"), TOKENIZERS_PARALLELISM="false")
    from hubkit.demo.world import build_world, cached_world

    cache = os.environ.get("HUBKIT_TEST_WORLD_CACHE")
    world = cached_world(args.work / "world", cache) if cache else build_world(args.work / "world")
    data = yaml.safe_load(world.paths.manifest.read_text())
    demo = data["evals"]["demo"]
    data["evals"] = {"demo": demo, "fp32": {**demo, "strategies": ["fp32-lora"]}}
    manifest = world.paths.root / "hubkit-bench-multi.yaml"
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))

    result = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "load_at_start": load(), "setups": {},
    }  # fmt: skip
    for name in args.setups.split(","):
        result["setups"][name] = bench_setup(name, manifest, world.paths.root, args.work, args.repeat)
    result["load_at_end"] = load()
    text = json.dumps(result, indent=2)
    (args.work / "eval_multi.json").write_text(text)
    if args.out:
        args.out.write_text(text + "\n")
    print("| setup | subjects | strategies | hubkit eval (s) | recorded commands one by one (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for name, r in result["setups"].items():
        strategies = ", ".join(f"{s}: {st}" for s, st in sorted(r["strategies"].items()))
        print(f"| {name} | {len(r['subjects'])} | {strategies} | {' / '.join(map(str, r['hubkit_eval_s']))} | {' / '.join(map(str, r['recorded_commands_s']))} | **{r['ratio']}×** |")
    all_loads = [x for r in result["setups"].values() for e in r["load"] for x in (e["before"][0], e["after"][0])]
    print(f"\n1-minute load average during the runs: {min(all_loads)}–{max(all_loads)} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
