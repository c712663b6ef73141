"""The GPU path for real: the 4-bit NF4 base + LoRA eval on CUDA, and the Space's mixed batch on a
GPU. Deselected by default (pyproject's addopts has -m "not gpu"); run them on a machine with a
CUDA GPU and a CUDA build of torch:

    HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -m gpu tests/test_gpu.py

They fail, rather than skip, when no CUDA device is visible, so a run that claims to have checked
the GPU path cannot pass without one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from hubkit.eval import run_eval
from hubkit.manifest import load_manifest

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.fail("these tests check the GPU path: no CUDA device is visible (torch.cuda.is_available() is False)")


def test_4bit_lora_eval_runs_on_cuda(demo_world, tmp_path):
    data = yaml.safe_load(demo_world.paths.manifest.read_text())
    data["evals"]["demo"].update(strategies=["4bit-lora"], artifacts=["lora-full"], include_base=False)
    path = demo_world.paths.root / "hubkit-gpu.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    (outcome,) = run_eval(load_manifest(path), runs_dir=tmp_path / "runs")
    p = outcome.record
    assert p.status == "ok" and p.strategy == "4bit-lora", p.attempts
    assert p.device == "cuda:0" and p.hardware["cuda_available"] and p.hardware["gpus"]
    assert p.call["device"] == "cuda:0" and p.call["bnb_4bit_quant_type"] == "nf4"
    acc = next(r.value for r in p.rows if r.metric == "acc")
    assert acc >= 0.9  # lora-full learned (far above the base's chance level; digits differ between devices)


def test_space_mixed_batch_on_cuda_matches_cpu(demo_world):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "space"))
    from engine import Engine

    p = demo_world.paths
    adapters = {n: str(p.adapters[n]) for n in ("lora-full", "lora-half")}
    gpu = Engine(str(p.base), adapters, add_bos_token=True, device="cuda")
    cpu = Engine(str(p.base), adapters, add_bos_token=True, device="cpu")
    context, choices = "Question: What is the colour of the flag of Belbel?\nAnswer:", [" green", " yellow", " purple", " orange"]
    on_gpu, on_cpu = gpu.score(context, choices), cpu.score(context, choices)
    for name in gpu.columns:
        assert on_gpu[name].loglik == pytest.approx(on_cpu[name].loglik, abs=1e-3), name
    assert gpu.generate(context, max_new_tokens=4) == cpu.generate(context, max_new_tokens=4)
