"""hubkit merge against peft's merge_and_unload and the adapter's own forward pass, on tiny real
models of several shapes; plus the safety promises (atomic output, early refusal, truncation)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hubkit.cli import main
from hubkit.errors import MergeError
from hubkit.inspection import sha256_file
from hubkit.merge import LINEAGE_FILE, merge, plan_merge

TOKENS = torch.tensor([[1, 5, 9, 33, 2, 17, 40, 3]])


def llama(tmp: Path, *, tied: bool, name: str = "base") -> Path:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
    path = tmp / name
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def gpt2(tmp: Path) -> Path:
    torch.manual_seed(0)
    path = tmp / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64)).save_pretrained(path)
    return path


def adapter(base: Path, out: Path, **lora) -> Path:
    """A LoRA adapter with random (non-zero) A and B, so every merge changes the weights."""
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, **lora))
    peft_model.save_pretrained(out)
    return out


def peft_reference(base: Path, adapter_dir: Path):
    """(logits of base+adapter unmerged, state dict of peft's merge_and_unload), in float32."""
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(adapter_dir)).eval()
    with torch.no_grad():
        logits = model(TOKENS).logits
    merged = model.merge_and_unload()
    return logits, {k: v.detach().clone() for k, v in merged.state_dict().items()}


def hubkit_logits(path: Path):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(TOKENS).logits, model


def merged_tensors(path: Path) -> dict:
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(load_file(f))
    return out


CASES = {
    "all-linear": dict(target_modules="all-linear", r=8, lora_alpha=16),
    "attention-only, rslora, rank/alpha patterns": dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], r=8, lora_alpha=16, use_rslora=True, rank_pattern={"k_proj": 4}, alpha_pattern={"v_proj": 3}),
    "modules_to_save lm_head": dict(target_modules=["q_proj", "down_proj"], r=4, lora_alpha=8, modules_to_save=["lm_head"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_merge_equals_peft(case, tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", **CASES[case])
    ref_logits, ref_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "out", base=base, dtype="float32")
    got = merged_tensors(result.out)
    assert set(got) == set(ref_state)  # every key, nothing extra
    for key, ref in ref_state.items():
        assert torch.isfinite(got[key]).all()
        torch.testing.assert_close(got[key], ref, atol=2e-6, rtol=1e-5, msg=key)
    logits, _ = hubkit_logits(result.out)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert result.lineage["merged_modules"] == len(result.plan.pairs) > 0
    # the base is hashed while it is read (also when the adapter replaces some of its tensors)
    assert result.lineage["base"]["sha256"] == {"model.safetensors": sha256_file(base / "model.safetensors")}
    assert result.lineage["files"] == {"model.safetensors": sha256_file(result.out / "model.safetensors")}
    # bfloat16 output: torch's own rounding of peft's float32 result, to within one bf16 step
    bf16 = merged_tensors(merge(ad, tmp_path / "bf16", base=base, dtype="bfloat16").out)
    for key, ref in ref_state.items():
        assert bf16[key].dtype == torch.bfloat16
        torch.testing.assert_close(bf16[key].float(), ref.to(torch.bfloat16).float(), atol=1e-6, rtol=2**-7, msg=key)


def test_demo_adapter_fp16_checkpoint(demo_world, tmp_path):
    """The demo's trained all-linear adapter, merged to fp16: loads alone, keeps the adapter's answers."""
    base, ad = demo_world.paths.base, demo_world.paths.adapters["lora-full"]
    ref_logits, ref_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "merged", base=base)
    got = merged_tensors(result.out)
    assert all(v.dtype == torch.float16 for v in got.values())
    for key, ref in ref_state.items():
        torch.testing.assert_close(got[key].float(), ref.half().float(), atol=1e-3, rtol=1e-3, msg=key)
    logits, model = hubkit_logits(result.out)
    assert (logits.argmax(-1) == ref_logits.argmax(-1)).float().mean() > 0.9
    cfg = json.loads((result.out / "config.json").read_text())
    assert cfg.get("dtype", cfg.get("torch_dtype")) == "float16"
    assert (result.out / "tokenizer.json").is_file() and (result.out / "generation_config.json").is_file()
    lineage = json.loads((result.out / LINEAGE_FILE).read_text())
    assert lineage["adapter"]["r"] == 16 and lineage["dtype"] == "float16"
    assert set(lineage["files"]) == {"model.safetensors"}


def test_tied_embeddings_attention_adapter_stays_tied(tmp_path):
    base = llama(tmp_path, tied=True)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8)
    ref_logits, ref_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "out", base=base, dtype="float32")
    got = merged_tensors(result.out)
    assert "lm_head.weight" not in got  # still tied, as in the base
    assert json.loads((result.out / "config.json").read_text())["tie_word_embeddings"] is True
    for key in got:
        torch.testing.assert_close(got[key], ref_state[key], atol=2e-6, rtol=1e-5, msg=key)
    logits, _ = hubkit_logits(result.out)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


def test_tied_embeddings_embedding_lora_is_untied(tmp_path):
    """A LoRA on a tied input embedding changes only the input side in the adapter's forward.
    peft's merge_and_unload writes it into the shared matrix (changing the output side too);
    hubkit unties, so the merged model computes what the adapter computed."""
    base = llama(tmp_path, tied=True)
    ad = adapter(base, tmp_path / "adapter", target_modules=["embed_tokens", "q_proj"], r=4, lora_alpha=8)
    ref_logits, peft_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "out", base=base, dtype="float32")
    logits, model = hubkit_logits(result.out)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)
    assert json.loads((result.out / "config.json").read_text())["tie_word_embeddings"] is False
    assert result.lineage["untied_embeddings"] is True
    original = load_file(base / "model.safetensors")["model.embed_tokens.weight"]
    torch.testing.assert_close(model.lm_head.weight, original)
    # what peft's merge gives is measurably different from the adapter's own outputs
    peft_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    peft_model.load_state_dict(peft_state, strict=False)
    with torch.no_grad():
        assert (peft_model(TOKENS).logits - ref_logits).abs().max() > 1e-2


def test_fan_in_fan_out_gpt2(tmp_path):
    base = gpt2(tmp_path)
    ad = adapter(base, tmp_path / "adapter", target_modules=["c_attn", "c_proj"], r=4, lora_alpha=8, fan_in_fan_out=True)
    ref_logits, ref_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "out", base=base, dtype="float32")
    got = merged_tensors(result.out)
    for key, value in got.items():
        torch.testing.assert_close(value, ref_state[key], atol=2e-6, rtol=1e-5, msg=key)
    logits, _ = hubkit_logits(result.out)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


def test_sharding_and_index(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules="all-linear", r=4, lora_alpha=8)
    small = merge(ad, tmp_path / "sharded", base=base, dtype="bfloat16", shard_size="10KB")
    whole = merge(ad, tmp_path / "whole", base=base, dtype="bfloat16")
    assert len(small.plan.shard_names) > 3
    index = json.loads((small.out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(small.plan.shard_names)
    a, b = merged_tensors(small.out), merged_tensors(whole.out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logits, _ = hubkit_logits(small.out)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_torch_and_numpy_casts_write_the_same_bytes(tmp_path, monkeypatch, dtype):
    """Big merges switch from numpy's half casts to torch's once torch is imported; the output
    must not depend on which did a chunk. Weights with subnormal, tie and near-overflow values."""
    base = llama(tmp_path, tied=False)
    tensors = load_file(base / "model.safetensors")
    w = tensors["model.layers.0.self_attn.q_proj.weight"]
    special = torch.tensor([1e-7, -3e-8, 6.1e-5, 1 + 2**-11, 1 + 3 * 2**-11, 65000.0, -2.0**-24, 0.1])
    w.view(-1)[: special.numel()] = special
    save_file(tensors, str(base / "model.safetensors"), metadata={"format": "pt"})
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8)
    torch_out = merge(ad, tmp_path / "torch", base=base, dtype=dtype)
    monkeypatch.setenv("HUBKIT_MERGE_NUMPY_ONLY", "1")
    numpy_out = merge(ad, tmp_path / "numpy", base=base, dtype=dtype)
    assert (torch_out.out / "model.safetensors").read_bytes() == (numpy_out.out / "model.safetensors").read_bytes()


def test_float16_overflow_is_refused(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    tensors = load_file(ad / "adapter_model.safetensors")
    tensors = {k: v * 1e6 if "lora_B" in k else v for k, v in tensors.items()}
    save_file(tensors, str(ad / "adapter_model.safetensors"))
    with pytest.raises(MergeError, match=r"q_proj.weight overflows float16") as err:
        merge(ad, tmp_path / "out", base=base, dtype="float16")
    assert err.value.hint == "Merge with --dtype bfloat16."
    assert not (tmp_path / "out").exists()
    merge(ad, tmp_path / "bf16", base=base, dtype="bfloat16")


def test_merge_is_byte_deterministic(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    one = merge(ad, tmp_path / "one", base=base)
    two = merge(ad, tmp_path / "two", base=base)
    for name in ("model.safetensors", "config.json", LINEAGE_FILE):
        assert (one.out / name).read_bytes() == (two.out / name).read_bytes(), name


# -- refusals, before anything is written -------------------------------------------------------


def test_wrong_base_is_refused_naming_the_tensor(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    torch.manual_seed(0)
    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    with pytest.raises(MergeError, match=r"lora_A\.weight does not fit the base: the update has shape \[32, 32\], base tensor model\.layers\.0\.self_attn\.q_proj\.weight has \[48, 48\]"):
        merge(ad, tmp_path / "out", base=other)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_missing_target_module_is_refused(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    g = gpt2(tmp_path)
    with pytest.raises(MergeError, match=r"targets model\.layers\.0\.self_attn\.q_proj\.weight, which is not in the base checkpoint"):
        plan_merge(ad, g)


def test_dora_and_pickles_are_refused(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8, use_dora=True)
    with pytest.raises(MergeError, match="use_dora is set: merging DoRA"):
        plan_merge(ad, base)
    plain = adapter(base, tmp_path / "plain", target_modules=["q_proj"], r=4, lora_alpha=8)
    (plain / "adapter_model.safetensors").rename(plain / "adapter_model.bin")
    with pytest.raises(MergeError, match="only a pickled adapter_model.bin"):
        plan_merge(plain, base)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"arrow_config": {"top_k": 2}}, r"arrow_config is set: merging Arrow"),
        ({"use_bdlora": None, "init_lora_weights": "olora"}, r"init_lora_weights is 'olora': peft rebuilds a residual base"),
        ({"fan_in_fan_out": True}, r"fan_in_fan_out is true but hubkit does not know which layers of model_type 'llama' are Conv1D"),
    ],
)
def test_variants_peft_cannot_build_here_are_refused_by_name(tmp_path, edit, named):
    """Variants set in adapter_config.json (Arrow needs several trained experts to build)."""
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    cfg.update(edit)
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MergeError, match=named):
        merge(ad, tmp_path / "out", base=base)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("variant", "config", "named"), [("kasa", {"kasa_config": {}}, "a KaSA tensor"), ("velora", {"velora_config": {"num_groups": 4}}, "does not declare \\(velora_config\\)")])
def test_variant_tensors_are_named_even_without_their_config(tmp_path, variant, config, named):
    """Issue #16: KaSA/VeLoRA/MonteCLoRA tensors were reported as a missing modules_to_save."""
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8, **config)
    cfg = json.loads((ad / "adapter_config.json").read_text())
    for key in config:
        cfg.pop(key)
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MergeError, match=named) as err:
        plan_merge(ad, base)
    assert "modules_to_save" not in err.value.message


def test_gpt2_fan_in_fan_out_is_decided_per_layer(tmp_path):
    """Issue #16: with lm_head among the targets peft saves fan_in_fan_out false, but GPT-2's
    Conv1D layers are (in, out) all the same; the square attn.c_proj once merged untransposed."""
    base = gpt2(tmp_path)
    ad = adapter(base, tmp_path / "adapter", target_modules=["c_attn", "c_proj", "c_fc", "lm_head"], r=4, lora_alpha=8)
    assert json.loads((ad / "adapter_config.json").read_text())["fan_in_fan_out"] is False
    ref_logits, ref_state = peft_reference(base, ad)
    result = merge(ad, tmp_path / "out", base=base, dtype="float32")
    flags = {p.module: p.fan_in_fan_out for p in result.plan.pairs}
    assert flags["transformer.h.0.attn.c_proj"] and flags["transformer.h.0.attn.c_attn"] and flags["transformer.h.1.mlp.c_fc"] and not flags["lm_head"]
    got = merged_tensors(result.out)
    square = "transformer.h.0.attn.c_proj.weight"
    assert got[square].shape[0] == got[square].shape[1]
    torch.testing.assert_close(got[square], ref_state[square], atol=2e-6, rtol=1e-5)
    logits, _ = hubkit_logits(result.out)
    torch.testing.assert_close(logits, ref_logits, atol=1e-4, rtol=1e-4)


def test_truncated_shard_is_detected(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    shard = base / "model.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 1000])
    with pytest.raises(MergeError, match="truncated"):
        merge(ad, tmp_path / "out", base=base)
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_force(tmp_path):
    base = llama(tmp_path, tied=False)
    ad = adapter(base, tmp_path / "adapter", target_modules=["q_proj"], r=4, lora_alpha=8)
    out = tmp_path / "out"
    merge(ad, out, base=base)
    with pytest.raises(MergeError, match="already exists"):
        merge(ad, out, base=base, dtype="bfloat16")
    assert json.loads((out / LINEAGE_FILE).read_text())["dtype"] == "float16"
    merge(ad, out, base=base, force=True, dtype="bfloat16")
    assert json.loads((out / LINEAGE_FILE).read_text())["dtype"] == "bfloat16"


# -- an interrupted merge -------------------------------------------------------------------------


def _big_base(tmp: Path) -> Path:
    """A ~300 MB Llama-shaped checkpoint written directly (no init cost), many small shards."""
    cfg = LlamaConfig(vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=8)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in LlamaForCausalLM(cfg).state_dict().items()}
    base = tmp / "big"
    base.mkdir()
    cfg.save_pretrained(base)
    save_file({k: torch.full(tuple(s), 0.01) for k, s in shapes.items()}, str(base / "model.safetensors"), metadata={"format": "pt"})
    return base


def test_killed_merge_leaves_nothing_that_looks_complete(tmp_path):
    base = _big_base(tmp_path)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    with torch.device("meta"):
        names = [k for k in get_peft_model(LlamaForCausalLM(LlamaConfig.from_pretrained(base)), cfg).state_dict() if "lora_" in k]
    ad = tmp_path / "adapter"
    ad.mkdir()
    tensors = {}
    for k in names:
        saved = "base_model.model." + k.split("base_model.model.", 1)[1].replace(".default", "")
        tensors[saved] = torch.full((4, 1024) if "lora_A" in k else (1024, 4), 0.001)
    save_file(tensors, str(ad / "adapter_model.safetensors"))
    (ad / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "base_model_name_or_path": str(base)}))
    out = tmp_path / "merged"
    cmd = [sys.executable, "-m", "hubkit", "merge", str(ad), "--out", str(out), "--shard-size", "20MB", "--dtype", "float32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    partial = None
    while time.time() < deadline and proc.poll() is None:
        found = list(tmp_path.glob(".merged.partial-*/model-00002-*"))
        if found:
            partial = found[0].parent
            break
        time.sleep(0.005)
    assert partial is not None, "merge finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing that looks complete
    assert partial.exists()  # only the hidden temporary folder
    # rerunning succeeds and sweeps the dead merge's leftovers
    done = subprocess.run(cmd + ["--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not partial.exists()
    report = json.loads(done.stdout)
    assert report["out"] == str(out) and len(report["files"]) > 5
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(report["files"])
    q = load_file(out / index["weight_map"]["model.layers.0.self_attn.q_proj.weight"])["model.layers.0.self_attn.q_proj.weight"]
    assert torch.allclose(q, torch.full_like(q, 0.01 + 2 * 4 * 0.001 * 0.001))


def test_cli_merge_errors_are_one_line(capsys, tmp_path):
    code = main(["merge", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: adapter ") and "no such folder" in err
