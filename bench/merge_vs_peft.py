"""Benchmark: `hubkit merge` vs peft `merge_and_unload` + `save_pretrained`, in one run.

Builds (once, under --work) a random-weight Mistral-shaped checkpoint of >= 1B parameters in fp16
and an r=16 all-linear LoRA adapter for it, written tensor by tensor with safetensors (no download,
no model init). Then runs each merge in its own process, alternating, --repeat times, and measures
wall time and peak RSS (from wait4's rusage, i.e. the kernel's own high-water mark) per run. It
also measures sequential disk read and write speed to give the floor a merge cannot beat: bytes
read / read speed + bytes written / write speed.

    python bench/merge_vs_peft.py --work /tmp/hubkit-bench [--layers 22] [--repeat 2]

Prints a Markdown table and writes the raw numbers to --work/merge_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

PEFT_SCRIPT = r"""
import sys, torch
from transformers import AutoModelForCausalLM
from peft import PeftModel
base, adapter, out = sys.argv[1:4]
model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float16)
model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
model.save_pretrained(out, safe_serialization=True, max_shard_size="5GB")
"""


def build(work: Path, layers: int) -> tuple[Path, Path, int]:
    import torch
    from safetensors.torch import save_file
    from transformers import MistralConfig, MistralForCausalLM

    base, adapter = work / "base", work / "adapter"
    cfg = MistralConfig(
        vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
        num_attention_heads=32, num_key_value_heads=8, tie_word_embeddings=False, dtype="float16",
    )
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in MistralForCausalLM(cfg).state_dict().items()}
    params = sum(torch.Size(s).numel() for s in shapes.values())
    if (base / "done").is_file() and (adapter / "done").is_file():
        return base, adapter, params
    base.mkdir(parents=True, exist_ok=True)
    adapter.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(base)
    gen = torch.Generator().manual_seed(0)
    # ~2 GB shards, the way hub checkpoints of this size come
    shard, size, n, weight_map = {}, 0, 0, {}
    names = list(shapes)

    def flush():
        nonlocal shard, size, n
        n += 1
        fname = f"model-{n:05d}.safetensors"
        save_file(shard, str(base / fname), metadata={"format": "pt"})
        weight_map.update({k: fname for k in shard})
        shard, size = {}, 0

    for k in names:
        t = (torch.randn(shapes[k], generator=gen) * 0.02).to(torch.float16) if len(shapes[k]) > 1 else torch.ones(shapes[k], dtype=torch.float16)
        if size and size + t.numel() * 2 > 2_000_000_000:
            flush()
        shard[k] = t
        size += t.numel() * 2
    flush()
    (base / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": params * 2}, "weight_map": weight_map}))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    lora = {}
    for k, s in shapes.items():
        mod = k[: -len(".weight")]
        if k.endswith(".weight") and mod.rsplit(".", 1)[-1] in targets:
            out_f, in_f = s
            lora[f"base_model.model.{mod}.lora_A.weight"] = torch.randn((16, in_f), generator=gen) * 0.01
            lora[f"base_model.model.{mod}.lora_B.weight"] = torch.randn((out_f, 16), generator=gen) * 0.01
    save_file(lora, str(adapter / "adapter_model.safetensors"), metadata={"format": "pt"})
    (adapter / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": targets, "base_model_name_or_path": str(base), "bias": "none", "fan_in_fan_out": False,
    }))
    (base / "done").write_text("")
    (adapter / "done").write_text("")
    return base, adapter, params


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time, CPU time and peak RSS of one process (kernel high-water mark via wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-3000:]}")
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_gb": round(usage.ru_maxrss * 1024 / 1e9, 3)}


def disk_speed(work: Path, size: int = 2_000_000_000) -> dict:
    """Sequential write (with fsync) and read of a scratch file, in GB/s."""
    path = work / "disk.probe"
    block = os.urandom(16 * 1024 * 1024)
    t0 = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(size // len(block)):
            fh.write(block)
        fh.flush()
        os.fsync(fh.fileno())
    write = size / (time.perf_counter() - t0) / 1e9
    # evict it from the page cache if the kernel lets us, so the read is a disk read
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(16 * 1024 * 1024)
        while fh.readinto(buf):
            pass
    read = size / (time.perf_counter() - t0) / 1e9
    path.unlink()
    return {"write_gbps": round(write, 3), "read_gbps": round(read, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubkit-bench"))
    ap.add_argument("--layers", type=int, default=22, help="22 layers of TinyLlama/Mistral-1B shape = 1.1B parameters")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--numpy-too", action="store_true", help="also time hubkit with HUBKIT_MERGE_NUMPY_ONLY=1 (no torch casts)")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        base, adapter, params = build(work, args.layers)
        print(json.dumps({"base": str(base), "adapter": str(adapter), "params": params}))
        return
    # Build in a child process: a child's peak RSS (ru_maxrss) starts from its parent's RSS at
    # fork time, so this process must stay small for the measurements to mean anything.
    t0 = time.perf_counter()
    built = json.loads(subprocess.run([sys.executable, __file__, "--work", str(work), "--layers", str(args.layers), "--build-only"], check=True, capture_output=True, text=True).stdout)
    base, adapter, params = Path(built["base"]), Path(built["adapter"]), built["params"]
    print(f"model: {params / 1e9:.2f}B parameters, fp16 (built in {time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    env_py = sys.executable
    load_before = list(os.getloadavg())  # other people's work on a shared machine shows here
    tools = ("peft", "hubkit") + (("hubkit-numpy",) if args.numpy_too else ())
    runs = {t: [] for t in tools}
    for i in range(args.repeat):
        for tool in tools:
            out = work / f"out-{tool}"
            subprocess.run(["rm", "-rf", str(out)], check=True)
            if tool == "peft":
                cmd = [env_py, "-c", PEFT_SCRIPT, str(base), str(adapter), str(out)]
            else:
                cmd = [env_py, "-m", "hubkit", "merge", str(adapter), "--base", str(base), "--out", str(out), "--dtype", "float16", "--json"]
            r = timed(cmd, {"HUBKIT_MERGE_NUMPY_ONLY": "1"} if tool == "hubkit-numpy" else {})
            if tool == "peft":
                # peft leaves its output in the page cache; hubkit fsyncs. Time peft's flush too,
                # so the durable comparison is like for like.
                t0 = time.perf_counter()
                for f in sorted(out.glob("*")):
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
                r["flush_s"] = round(time.perf_counter() - t0, 2)
            runs[tool].append(r)
            print(f"run {i + 1} {tool}: {r}", file=sys.stderr)
    disk = disk_speed(work)
    bytes_in = sum(p.stat().st_size for p in base.glob("*.safetensors"))
    bytes_out = sum(p.stat().st_size for p in (work / "out-hubkit").glob("*.safetensors"))
    floor = bytes_in / (disk["read_gbps"] * 1e9) + bytes_out / (disk["write_gbps"] * 1e9)
    best = {t: min(r["wall_s"] for r in rs) for t, rs in runs.items()}
    best_durable = min(r["wall_s"] + r["flush_s"] for r in runs["peft"])
    rss = {t: max(r["peak_rss_gb"] for r in rs) for t, rs in runs.items()}
    result = {
        "params": params, "bytes_in": bytes_in, "bytes_out": bytes_out, "disk": disk, "floor_s": round(floor, 2),
        "runs": runs, "best_wall_s": best, "peak_rss_gb": rss,
        "wall_ratio": round(best["hubkit"] / best["peft"], 3), "rss_ratio": round(rss["hubkit"] / rss["peft"], 3),
        "peft_durable_best_s": round(best_durable, 2), "wall_ratio_durable": round(best["hubkit"] / best_durable, 3),
        "cpu": os.cpu_count(), "load_before": load_before, "load_after": list(os.getloadavg()),
    }
    (work / "merge_results.json").write_text(json.dumps(result, indent=2))
    print(f"| tool | best wall (s) | peak RSS (GB) |\n|---|---|---|")
    for t in tools:
        print(f"| {t} | {best[t]:.1f} | {rss[t]:.2f} |")
    print(f"\nratios hubkit/peft: wall {result['wall_ratio']}, peak RSS {result['rss_ratio']}; "
          f"wall vs peft + flushing its output to disk ({best_durable:.1f}s): {result['wall_ratio_durable']}")
    print(f"disk: read {disk['read_gbps']} GB/s, write+fsync {disk['write_gbps']} GB/s; floor {floor:.1f}s "
          f"({bytes_in / 1e9:.2f} GB in, {bytes_out / 1e9:.2f} GB out); hubkit at {best['hubkit'] / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
