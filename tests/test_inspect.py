"""`hubkit inspect`: facts read from files, checked against peft's own numbers."""

from __future__ import annotations

import json
import shutil

import pytest

from hubkit.errors import InspectError
from hubkit.inspection import inspect_path, read_safetensors_header, sha256_file

PROJECTIONS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_adapter_facts_match_peft(demo_world):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    path = demo_world.paths.adapters["lora-full"]
    facts = inspect_path(path)
    assert facts.kind == "adapter"
    assert facts.r == 16 and facts.lora_alpha == 32 and facts.lora_dropout == 0.05
    assert facts.scaling == 2.0 and not facts.use_rslora and not facts.use_dora
    assert facts.module_types == PROJECTIONS
    assert facts.adapted_modules == 2 * 7  # 2 layers x 7 projections
    assert facts.base_model == "hubkit-demo/tiny-mistral"

    base = AutoModelForCausalLM.from_pretrained(demo_world.paths.base, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, path, is_trainable=True)
    trainable, total = model.get_nb_trainable_parameters()
    assert facts.trainable_params == trainable
    weights = next(f for f in facts.files if f.path == "adapter_model.safetensors")
    assert weights.sha256 == sha256_file(path / "adapter_model.safetensors")


def test_checkpoint_facts(demo_world):
    facts = inspect_path(demo_world.paths.base)
    assert facts.kind == "checkpoint"
    assert facts.architectures == ["MistralForCausalLM"]
    assert facts.params == demo_world.info["base"]["params"]
    assert facts.shards == ["model.safetensors"]
    assert facts.num_layers == 2 and facts.hidden_size == 64
    assert "tokenizer.json" in facts.tokenizer_files


@pytest.fixture
def adapter_copy(demo_world, tmp_path):
    dst = tmp_path / "adapter"
    shutil.copytree(demo_world.paths.adapters["lora-half"], dst)
    return dst


def test_missing_adapter_config_is_neither(adapter_copy):
    (adapter_copy / "adapter_config.json").unlink()
    with pytest.raises(InspectError) as info:
        inspect_path(adapter_copy)
    assert str(info.value) == f"{adapter_copy}: neither a PEFT adapter (no adapter_config.json) nor a checkpoint (no config.json) nor GGUF files (no .gguf)"


def test_corrupt_adapter_config_names_file(adapter_copy):
    cfg = adapter_copy / "adapter_config.json"
    cfg.write_text("{not json")
    with pytest.raises(InspectError) as info:
        inspect_path(adapter_copy)
    assert str(info.value).startswith(f"{cfg}: not valid JSON (PEFT adapter config)")


def test_config_missing_rank(adapter_copy):
    cfg = adapter_copy / "adapter_config.json"
    data = json.loads(cfg.read_text())
    del data["r"]
    cfg.write_text(json.dumps(data))
    with pytest.raises(InspectError) as info:
        inspect_path(adapter_copy)
    assert str(info.value) == f"{cfg}: field 'r': expected a number, got None"


def test_truncated_safetensors_is_detected(adapter_copy):
    weights = adapter_copy / "adapter_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(InspectError) as info:
        inspect_path(adapter_copy)
    assert str(info.value).startswith(f"{weights}: truncated: tensors need {len(data)} bytes, file has {len(data) - 100}")


def test_garbage_safetensors_is_detected(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\xff" * 64)
    with pytest.raises(InspectError) as info:
        read_safetensors_header(bad)
    assert "corrupt or truncated safetensors file" in str(info.value)


def test_pickle_only_adapter_is_refused(adapter_copy):
    (adapter_copy / "adapter_model.safetensors").rename(adapter_copy / "adapter_model.bin")
    with pytest.raises(InspectError) as info:
        inspect_path(adapter_copy)
    assert "pickled weights only" in str(info.value)


def test_missing_path(tmp_path):
    with pytest.raises(InspectError) as info:
        inspect_path(tmp_path / "nope")
    assert str(info.value) == f"{tmp_path / 'nope'}: no such file or directory"


def test_no_hash_skips_sha(demo_world):
    facts = inspect_path(demo_world.paths.adapters["lora-full"], hash_files=False)
    assert all(f.sha256 is None for f in facts.files)


def test_inspect_json_reads_back_as_facts_read_by_hubkit(demo_world, tmp_path):
    from hubkit.inspection import load_facts_file

    for path in (demo_world.paths.adapters["lora-full"], demo_world.paths.base):
        facts = inspect_path(path, hash_files=False)
        file = tmp_path / "facts.json"
        file.write_text(json.dumps(facts.to_dict()))
        loaded = load_facts_file(file)
        assert loaded["provenance"] == {"source": "inspect", "file": str(file), "by": facts.inspected_by}
        for key, value in facts.to_dict().items():
            assert loaded[key] == json.loads(json.dumps(value)), key


def test_seed_facts_written_by_hand_are_stated_not_read():
    """examples/seed000's facts were typed from the published card (no weights in the example):
    without inspected_by they read back as stated by the author, with their `_note` as a comment."""
    from pathlib import Path

    from hubkit.inspection import load_facts_file

    facts = load_facts_file(Path(__file__).parents[1] / "examples" / "seed000" / "adapter.facts.json", shown_as="adapter.facts.json")
    assert facts["provenance"]["source"] == "author" and "_note" not in facts
    assert (facts["r"], facts["trainable_params"], facts["base_params"]) == (16, 41943040, 3794014208)


def test_checkpoint_records_its_quantization_config(demo_world, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(demo_world.paths.base, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "llm_int8_skip_modules": None}
    (dst / "config.json").write_text(json.dumps(cfg))
    facts = inspect_path(dst, hash_files=False)
    assert facts.quantization == {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    assert inspect_path(demo_world.paths.base, hash_files=False).quantization is None
