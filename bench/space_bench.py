"""Benchmark: the Space's engine (one base, N adapters, one mixed batch per request) against the
obvious alternatives, on random-weight Mistral-shaped models built locally (no download).

  memory:  resident set size after loading base + N adapters into one PeftModel vs N+1
           separately loaded models (base, and base+adapter per adapter), each in a fresh process
  speed:   one mixed batch of N+1 rows (base + N adapters) vs N+1 sequential single-row calls of
           the same engine, greedy, same prompt: generated tokens per second

    python bench/space_bench.py --work /tmp/hubkit-bench-space [--sizes tiny,0.5b] [--ns 1,2,4]

Results go to bench/results/space.json and are summarized in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    # hidden, intermediate, layers, heads, kv heads
    "tiny": (64, 128, 2, 4, 2),
    "0.5b": (1024, 3584, 24, 16, 4),
}


def build(work: Path, size: str, n_max: int) -> Path:
    """A random Mistral-shaped base with the demo tokenizer, and n_max random r=16 all-linear adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    base = work / size / "base"
    if (base / "config.json").is_file() and all((work / size / f"a{i}" / "adapter_config.json").is_file() for i in range(n_max)):
        return work / size
    world = work / "world"
    if not (world / "base" / "tokenizer.json").is_file():
        from hubkit.demo.world import build_world

        build_world(world)
    tok = AutoTokenizer.from_pretrained(world / "base")
    h, inter, layers, heads, kv = SHAPES[size]
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=h, intermediate_size=inter, num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=512, tie_word_embeddings=False)
    model = MistralForCausalLM(cfg)
    model.save_pretrained(base)
    tok.save_pretrained(base)
    for i in range(n_max):
        torch.manual_seed(100 + i)
        peft_model = get_peft_model(MistralForCausalLM.from_pretrained(base), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", init_lora_weights=False))
        peft_model.save_pretrained(work / size / f"a{i}")
    return work / size


def _memory(rss0: int) -> dict:
    """Resident memory added by the models. PSS counts a page shared by several mappings (the
    same safetensors file mmapped by N loads) once, split between them; RSS counts it per mapping."""
    import psutil

    info = psutil.Process().memory_full_info()
    return {"rss_gb": (info.rss - rss0) / 1e9, "pss_gb": info.pss / 1e9, "uss_gb": info.uss / 1e9}


def worker(args) -> None:
    """One measurement in a fresh process; prints JSON."""
    import psutil
    import torch

    torch.set_num_threads(args.threads)
    folder = Path(args.folder)
    adapters = {f"a{i}": str(folder / f"a{i}") for i in range(args.n)}
    rss0 = psutil.Process().memory_info().rss
    out: dict = {"mode": args.mode, "n": args.n}
    if args.mode == "separate":
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        models = [AutoModelForCausalLM.from_pretrained(folder / "base", dtype=getattr(torch, args.dtype)).eval()]
        for path in adapters.values():
            models.append(PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder / "base", dtype=getattr(torch, args.dtype)), path).eval())
        with torch.inference_mode():
            for model in models:  # touch every weight, as serving does
                model(input_ids=torch.tensor([[1, 2, 3]]))
        out.update(_memory(rss0))
        print(json.dumps(out))
        return
    sys.path.insert(0, str(ROOT / "space"))
    from engine import Engine

    eng = Engine(str(folder / "base"), adapters, dtype=args.dtype, device="cpu")
    eng.score("Question: x\nAnswer:", [" a", " b"])  # touch every weight of every column
    out.update(_memory(rss0))
    if args.mode == "mixed":
        prompt = "Question: What is the colour of the flag of Belbel?\nAnswer:"
        kw = dict(max_new_tokens=args.tokens, temperature=0.0)
        eng.generate(prompt, ["__base__"], max_new_tokens=2)  # warm-up
        # the models are random: force full-length generations so both sides make the same tokens
        eng.eos_ids = set()
        best_mixed = best_seq = float("inf")
        for _ in range(args.repeat):
            t = time.perf_counter()
            eng.generate(prompt, eng.columns, **kw)
            best_mixed = min(best_mixed, time.perf_counter() - t)
            t = time.perf_counter()
            for col in eng.columns:
                eng.generate(prompt, [col], **kw)
            best_seq = min(best_seq, time.perf_counter() - t)
        tokens = args.tokens * len(eng.columns)
        out.update(mixed_s=best_mixed, sequential_s=best_seq, tokens=tokens, mixed_tok_s=tokens / best_mixed, sequential_tok_s=tokens / best_seq)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubkit-bench-space"))
    ap.add_argument("--sizes", default="tiny,0.5b")
    ap.add_argument("--ns", default="1,2,4")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float32", help="float32 keeps the file's weights mmapped (pages shared between loads); bfloat16 converts, so every load owns a copy, as on a GPU")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "space.json")
    ap.add_argument("--worker", choices=["mixed", "separate"])
    ap.add_argument("--folder")
    ap.add_argument("--n", type=int)
    args = ap.parse_args()
    if args.worker:
        args.mode = args.worker
        return worker(args)
    ns = [int(x) for x in args.ns.split(",")]
    results = []
    for size in args.sizes.split(","):
        folder = build(args.work, size, max(ns))
        for n in ns:
            row = {"size": size, "n": n}
            for mode in ("mixed", "separate"):
                cmd = [sys.executable, __file__, "--worker", mode, "--folder", str(folder), "--n", str(n), "--tokens", str(args.tokens), "--repeat", str(args.repeat), "--threads", str(args.threads), "--dtype", args.dtype]
                proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
                if proc.returncode:
                    raise SystemExit(proc.stderr[-3000:])
                row[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            row["rss_ratio"] = row["mixed"]["rss_gb"] / row["separate"]["rss_gb"]
            row["uss_ratio"] = row["mixed"]["uss_gb"] / row["separate"]["uss_gb"]
            row["pss_ratio"] = row["mixed"]["pss_gb"] / row["separate"]["pss_gb"]
            row["tok_s_ratio"] = row["mixed"]["mixed_tok_s"] / row["mixed"]["sequential_tok_s"]
            results.append(row)
            print(f"{size:>5} N={n}: RSS one PeftModel {row['mixed']['rss_gb']:.3f} GB vs {n + 1} models {row['separate']['rss_gb']:.3f} GB "
                  f"({row['rss_ratio']:.3f}x), PSS {row['mixed']['pss_gb']:.3f} vs {row['separate']['pss_gb']:.3f} GB ({row['pss_ratio']:.3f}x); tokens/s mixed {row['mixed']['mixed_tok_s']:.1f} vs sequential {row['mixed']['sequential_tok_s']:.1f} ({row['tok_s_ratio']:.2f}x)", flush=True)
    out = args.out
    out.write_text(json.dumps({"threads": args.threads, "tokens": args.tokens, "dtype": args.dtype, "results": results}, indent=2) + "\n")
    print(f"-> {out}")
    shutil.rmtree(args.work / "world" / "runs", ignore_errors=True)


if __name__ == "__main__":
    main()
