"""Benchmark: hubkit publish vs huggingface_hub's upload_folder, against the local Hub server.

A ~1 GB merged-checkpoint folder (random bytes in a safetensors file, config, tokenizer), in one
run, in-process, both through the genuine huggingface_hub client:
  1. first publish: hubkit publish (plan + one commit) vs upload_folder of the same folder to a
     second repo (throughput)
  2. no-op republish: hubkit (remote tree vs cached local hashes: no weights re-read) vs
     upload_folder's own skip-by-oid (hashes every file, then preupload); target <= 0.05x
  3. card-only change: hubkit sends only README.md

    python bench/publish_bench.py --work /tmp/hubkit-bench-publish [--gb 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def build(folder: Path, size: int) -> None:
    if (folder / "model.safetensors").is_file() and (folder / "model.safetensors").stat().st_size >= size:
        return
    folder.mkdir(parents=True, exist_ok=True)
    header = json.dumps({"__metadata__": {"format": "pt"}, "blob": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        left = size
        while left:
            n = min(left, 64 << 20)
            fh.write(os.urandom(n))
            left -= n
    (folder / "config.json").write_text(json.dumps({"architectures": ["MistralForCausalLM"], "model_type": "mistral", "torch_dtype": "float16"}))
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}))


MANIFEST = """schema_version: 1
project:
  name: Publish benchmark
  summary: {summary}
  license: apache-2.0
artifacts:
  merged:
    kind: merged
    path: model
    repo_id: bench/merged-1g
    base_model: bench/base
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/hubkit-bench-publish"))
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = args.work
    import shutil

    shutil.rmtree(work / "hub", ignore_errors=True)
    shutil.rmtree(work / "hub-plain", ignore_errors=True)
    shutil.rmtree(work / ".hubkit", ignore_errors=True)
    build(work / "model", int(args.gb * 1e9))
    (work / "hubkit.yaml").write_text(MANIFEST.format(summary="first"))

    from huggingface_hub import HfApi

    from hubkit.hub.server import LocalHub
    from hubkit.manifest import load_manifest
    from hubkit.publish import hub_session, publish

    size = sum(p.stat().st_size for p in (work / "model").iterdir())
    # Two servers with separate stores: the server deduplicates LFS objects by sha256, so a
    # second upload of the same bytes to the same server would send nothing.
    with LocalHub(work / "hub", record=True) as hub, LocalHub(work / "hub-plain") as plain, hub_session(hub.url):
        api = HfApi(endpoint=plain.url, token="x")
        t0 = time.perf_counter()
        publish(load_manifest(work / "hubkit.yaml"), endpoint=hub.url, token="hf_benchmark_token")
        first_hubkit = time.perf_counter() - t0
        api.create_repo("bench/plain-1g")
        t0 = time.perf_counter()
        api.upload_folder(folder_path=str(work / "model"), repo_id="bench/plain-1g")
        first_plain = time.perf_counter() - t0

        # the first republish: hashes come from the cache filled at upload time, so no weights are read
        t0 = time.perf_counter()
        publish(load_manifest(work / "hubkit.yaml"), endpoint=hub.url, token="hf_benchmark_token")
        first_noop = time.perf_counter() - t0
        noop_hubkit, noop_plain = [], []
        for _ in range(args.repeat):
            n_req = len(hub.requests)
            t0 = time.perf_counter()
            r = publish(load_manifest(work / "hubkit.yaml"), endpoint=hub.url, token="hf_benchmark_token")
            noop_hubkit.append(time.perf_counter() - t0)
            assert all(p.noop for p in r.plans) and not any("/commit/" in x or "lfs-upload" in x for x in hub.requests[n_req:])
            head = api.repo_info("bench/plain-1g").sha
            t0 = time.perf_counter()
            api.upload_folder(folder_path=str(work / "model"), repo_id="bench/plain-1g")
            noop_plain.append(time.perf_counter() - t0)
            assert api.repo_info("bench/plain-1g").sha == head

        (work / "hubkit.yaml").write_text(MANIFEST.format(summary="second"))
        n_req = len(hub.requests)
        t0 = time.perf_counter()
        r = publish(load_manifest(work / "hubkit.yaml"), endpoint=hub.url, token="hf_benchmark_token")
        card_only = time.perf_counter() - t0
        sent = [f.path_in_repo for p in r.plans for f in p.added + p.changed]
        assert sent == ["README.md"], sent
        assert not any("lfs-upload" in x for x in hub.requests[n_req:])

    res = {
        "bytes": size, "first_publish_s": {"hubkit": round(first_hubkit, 2), "upload_folder": round(first_plain, 2)},
        "first_publish_throughput_ratio": round(first_plain / first_hubkit, 3),
        "noop_s": {"hubkit": [round(x, 3) for x in noop_hubkit], "upload_folder": [round(x, 3) for x in noop_plain]},
        "noop_ratio": round(statistics.median(noop_hubkit) / statistics.median(noop_plain), 3),
        "first_noop_after_publish_s": round(first_noop, 3), "card_only_s": round(card_only, 3), "card_only_sent": sent, "cpu": os.cpu_count(),
    }
    (work / "publish_results.json").write_text(json.dumps(res, indent=2))
    print("| measure | hubkit | upload_folder | ratio |\n|---|---|---|---|")
    print(f"| first publish of {size / 1e9:.2f} GB | {first_hubkit:.2f} s | {first_plain:.2f} s | throughput {res['first_publish_throughput_ratio']}x |")
    print(f"| no-op republish (median of {args.repeat}) | {statistics.median(noop_hubkit):.3f} s | {statistics.median(noop_plain):.3f} s | {res['noop_ratio']}x |")
    print(f"| first republish right after publishing | {first_noop:.3f} s | | |")
    print(f"| card-only change | {card_only:.3f} s (sent: README.md) | | |")


if __name__ == "__main__":
    sys.exit(main())
