"""The merge matrix: every architecture x every LoRA variant, tiny real models built in code.

For each case peft builds and saves a (randomly "trained") adapter on a real transformers model,
then hubkit merges it tensor by tensor and transformers loads the result. A merged case must
  - load with no missing, unexpected or mis-shaped tensor,
  - give the unmerged PeftModel's logits, and
  - hold peft's `merge_and_unload` weights, except where peft writes into a tied matrix a change
    the adapter makes on one side only (then peft's own merged logits are shown to be off).
A refused case must fail with a MergeError that names the variant, before anything is written.

The cases of issue #16: aLoRA (`alora`), GPT-2's per-layer fan_in_fan_out (`gpt2-head`,
`gpt2-all-linear`, and test_merge.py), a resized vocabulary on tied models (`resized-embed`),
`modules_to_save` keys of every form (`resized-modules_to_save`), Mixtral's fused experts and router
(`mixtral-all-linear` and the extra cases), named refusals (`dora`, `alora`, extras).
"""

from __future__ import annotations

import copy
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from hubkit.errors import MergeError
from hubkit.merge import merge

VOCAB = 64
HIDDEN = 16
RESIZED = VOCAB + 8
TOKENS = torch.tensor([[1, 5, 9, 33, 2, 17, 40, 3, 63, 7]])


@dataclass(frozen=True)
class Arch:
    name: str
    attention: tuple[str, ...]  # attention projections, as peft targets them
    mlp: tuple[str, ...]
    embed: str  # input embedding module
    norm: str  # final norm module
    tied: bool  # the architecture's default
    biases: bool  # its linear layers carry biases
    config_args: dict = field(default_factory=dict)

    def config(self, **overrides):
        import transformers as T

        classes = {
            "llama": T.LlamaConfig, "mistral": T.MistralConfig, "qwen2": T.Qwen2Config, "qwen3": T.Qwen3Config,
            "gemma": T.GemmaConfig, "gemma2": T.Gemma2Config, "gemma3_text": T.Gemma3TextConfig, "phi3": T.Phi3Config,
            "gpt2": T.GPT2Config, "gpt_neox": T.GPTNeoXConfig, "opt": T.OPTConfig, "falcon": T.FalconConfig,
            "mixtral": T.MixtralConfig, "olmo2": T.Olmo2Config, "qwen2_moe": T.Qwen2MoeConfig, "qwen3_moe": T.Qwen3MoeConfig,
        }
        args = dict(vocab_size=VOCAB, tie_word_embeddings=self.tied, bos_token_id=1, eos_token_id=2)
        if self.name != "gpt2":
            args.update(num_hidden_layers=2)
        return classes[self.name](**{**args, **self.config_args, **overrides})


_SMALL = dict(hidden_size=HIDDEN, intermediate_size=32, num_attention_heads=2, num_key_value_heads=1)
_LLAMA = dict(attention=("q_proj", "k_proj", "v_proj", "o_proj"), mlp=("gate_proj", "up_proj", "down_proj"), embed="model.embed_tokens", norm="model.norm")
ARCHS = {
    a.name: a
    for a in [
        Arch("llama", **_LLAMA, tied=False, biases=False, config_args=_SMALL),
        Arch("mistral", **_LLAMA, tied=False, biases=False, config_args=_SMALL),
        Arch("qwen2", **_LLAMA, tied=False, biases=True, config_args=_SMALL),
        Arch("qwen3", **_LLAMA, tied=False, biases=False, config_args={**_SMALL, "head_dim": 8}),
        Arch("gemma", **_LLAMA, tied=True, biases=False, config_args={**_SMALL, "head_dim": 8}),
        Arch("gemma2", **_LLAMA, tied=True, biases=False, config_args={**_SMALL, "head_dim": 8}),
        Arch("gemma3_text", **_LLAMA, tied=True, biases=False, config_args={**_SMALL, "head_dim": 8}),
        Arch("phi3", attention=("qkv_proj", "o_proj"), mlp=("gate_up_proj", "down_proj"), embed="model.embed_tokens", norm="model.norm", tied=False, biases=False, config_args={**_SMALL, "pad_token_id": 0}),
        Arch("gpt2", attention=("c_attn", "attn.c_proj"), mlp=("c_fc", "mlp.c_proj"), embed="transformer.wte", norm="transformer.ln_f", tied=True, biases=True, config_args=dict(n_embd=HIDDEN, n_head=2, n_layer=2, n_positions=32)),
        Arch("gpt_neox", attention=("query_key_value", "attention.dense"), mlp=("dense_h_to_4h", "dense_4h_to_h"), embed="gpt_neox.embed_in", norm="gpt_neox.final_layer_norm", tied=False, biases=True, config_args=dict(hidden_size=HIDDEN, intermediate_size=32, num_attention_heads=2)),
        Arch("opt", attention=("q_proj", "k_proj", "v_proj", "out_proj"), mlp=("fc1", "fc2"), embed="model.decoder.embed_tokens", norm="model.decoder.final_layer_norm", tied=True, biases=True, config_args=dict(hidden_size=HIDDEN, ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=HIDDEN, max_position_embeddings=32)),
        Arch("falcon", attention=("query_key_value", "self_attention.dense"), mlp=("dense_h_to_4h", "dense_4h_to_h"), embed="transformer.word_embeddings", norm="transformer.ln_f", tied=True, biases=False, config_args=dict(hidden_size=HIDDEN, num_attention_heads=2)),
        # all-linear on Mixtral reaches the router and the fused experts through target_parameters
        Arch("mixtral", attention=("q_proj", "k_proj", "v_proj", "o_proj"), mlp=(), embed="model.embed_tokens", norm="model.norm", tied=False, biases=False, config_args={**_SMALL, "intermediate_size": 24, "num_local_experts": 4, "num_experts_per_tok": 2}),
        Arch("olmo2", **_LLAMA, tied=False, biases=False, config_args=_SMALL),
    ]
}
MOE = {
    "qwen2_moe": Arch("qwen2_moe", **_LLAMA, tied=False, biases=True, config_args={**_SMALL, "moe_intermediate_size": 8, "shared_expert_intermediate_size": 16, "num_experts": 4, "num_experts_per_tok": 2}),
    "qwen3_moe": Arch("qwen3_moe", **_LLAMA, tied=False, biases=False, config_args={**_SMALL, "moe_intermediate_size": 8, "head_dim": 8, "num_experts": 4, "num_experts_per_tok": 2}),
}


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Variant:
    name: str
    lora: Callable[[Arch], dict]  # LoraConfig arguments for this architecture
    applies: Callable[[Arch], bool] = lambda a: True
    refused: Callable[[Arch], str | None] = lambda a: None  # hubkit's refusal (a regex), or None: merged
    base: str = "default"  # "default", "tied" (tie_word_embeddings forced on) or "resized" (vocabulary +8)


def _attn(a: Arch) -> list[str]:
    return list(a.attention)


VARIANTS = [
    Variant("attention", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8)),
    Variant("all-linear", lambda a: dict(target_modules="all-linear", r=4, lora_alpha=8)),
    Variant("patterns", lambda a: dict(target_modules=_attn(a) + list(a.mlp), r=4, lora_alpha=8, rank_pattern={_leaf(a.attention[0]): 2}, alpha_pattern={_leaf(a.attention[-1]): 3})),
    Variant("rslora", lambda a: dict(target_modules=_attn(a) + list(a.mlp), r=8, lora_alpha=4, use_rslora=True)),
    Variant("modules_to_save-head", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, modules_to_save=["lm_head"])),
    Variant("modules_to_save-norm", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, modules_to_save=[a.norm])),
    Variant("layers_to_transform", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, layers_to_transform=[1])),
    Variant("embed", lambda a: dict(target_modules=[_leaf(a.embed)] + _attn(a), r=4, lora_alpha=8)),
    Variant("head", lambda a: dict(target_modules=["lm_head"] + _attn(a), r=4, lora_alpha=8)),
    Variant("bias-lora_only", lambda a: dict(target_modules=_attn(a) + list(a.mlp), r=4, lora_alpha=8, bias="lora_only"), applies=lambda a: a.biases),
    Variant("bias-all", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, bias="all"), applies=lambda a: a.biases),
    Variant("lora_bias", lambda a: dict(target_modules=_attn(a)[:1], r=4, lora_alpha=8, lora_bias=True), refused=lambda a: None if a.biases else r"lora_bias on .*whose base layer has no bias"),
    Variant("tokens", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, trainable_token_indices=[3, 5, 40])),
    Variant("tied", lambda a: dict(target_modules=[_leaf(a.embed), "lm_head"] + _attn(a), r=4, lora_alpha=8), base="tied"),
    # Untied, the resized head's new rows are in no file the adapter saved: refused, not guessed.
    # (peft saves both embedding layers when it does not know the target as one: GPT-NeoX's embed_in.)
    Variant("resized-embed", lambda a: dict(target_modules=[_leaf(a.embed)] + _attn(a), r=4, lora_alpha=8), base="resized", refused=lambda a: None if a.tied or a.name == "gpt_neox" else r"resized the vocabulary to 72 rows but carries no lm_head of that size"),
    Variant("resized-modules_to_save", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, modules_to_save=[_leaf(a.embed), "lm_head"]), base="resized"),
    Variant("dora", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, use_dora=True), refused=lambda a: r"use_dora is set: merging DoRA"),
    Variant("alora", lambda a: dict(target_modules=_attn(a), r=4, lora_alpha=8, alora_invocation_tokens=[5, 9]), refused=lambda a: r"alora_invocation_tokens is set: merging aLoRA .*peft refuses too"),
]

# Variants from peft's own tests, on the architectures where they mean something.
EXTRA = [
    ("llama", Variant("regex-targets", lambda a: dict(target_modules=r".*\.(q_proj|down_proj)$", r=4, lora_alpha=8))),
    ("llama", Variant("exclude_modules", lambda a: dict(target_modules="all-linear", exclude_modules=["o_proj"], r=4, lora_alpha=8))),
    ("llama", Variant("anchored-patterns", lambda a: dict(target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8, rank_pattern={"^model.layers.0.self_attn.q_proj": 6}, alpha_pattern={"model.layers.1.self_attn.v_proj": 32}))),
    ("llama", Variant("gaussian-init-dropout", lambda a: dict(target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8, lora_dropout=0.1, init_lora_weights="gaussian"))),
    ("llama", Variant("mica", lambda a: dict(target_modules=["q_proj", "up_proj"], r=4, lora_alpha=8, init_lora_weights="mica"))),
    ("llama", Variant("velora", lambda a: dict(target_modules=["q_proj", "up_proj"], r=4, lora_alpha=8, velora_config={"num_groups": 4}))),
    ("llama", Variant("monteclora", lambda a: dict(target_modules=["q_proj", "up_proj"], r=4, lora_alpha=8, monteclora_config={}))),
    ("llama", Variant("bdlora", lambda a: dict(target_modules=["q_proj", "o_proj", "up_proj"], r=4, lora_alpha=8, use_bdlora={"target_modules_bd_a": ["q_proj"], "target_modules_bd_b": ["o_proj", "up_proj"], "nblocks": 2, "match_strict": False}))),
    ("llama", Variant("kasa", lambda a: dict(target_modules=["q_proj"], r=4, lora_alpha=8, kasa_config={}), refused=lambda a: r"kasa_config is set: merging KaSA")),
    ("llama", Variant("pissa", lambda a: dict(target_modules=["q_proj"], r=4, lora_alpha=8, init_lora_weights="pissa"), refused=lambda a: r"init_lora_weights is 'pissa': peft rebuilds a residual base")),
    ("llama", Variant("qalora", lambda a: dict(target_modules=["q_proj"], r=4, lora_alpha=8, use_qalora=True), refused=lambda a: r"use_qalora is set: merging QALoRA")),
    ("llama", Variant("layer_replication", lambda a: dict(target_modules=["q_proj"], r=4, lora_alpha=8, layer_replication=[[0, 2], [1, 2]]), refused=lambda a: r"layer_replication is set")),
    ("gemma", Variant("ensure_weight_tying-modules_to_save", lambda a: dict(target_modules=["q_proj"], r=4, lora_alpha=8, modules_to_save=["embed_tokens", "lm_head"], ensure_weight_tying=True))),
    ("gemma", Variant("ensure_weight_tying-lora", lambda a: dict(target_modules=["embed_tokens", "lm_head", "q_proj"], r=4, lora_alpha=8, ensure_weight_tying=True))),
    ("gpt2", Variant("fan_in_fan_out-true", lambda a: dict(target_modules=["c_attn", "c_proj", "c_fc"], r=4, lora_alpha=8, fan_in_fan_out=True))),
    ("mixtral", Variant("experts", lambda a: dict(target_modules=[], target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], r=4, lora_alpha=8))),
    ("mixtral", Variant("experts-down_proj", lambda a: dict(target_modules=[], target_parameters=["mlp.experts.down_proj"], r=2, lora_alpha=8))),
    ("mixtral", Variant("router", lambda a: dict(target_modules=["gate"], r=2, lora_alpha=4))),
    ("qwen2_moe", Variant("all-linear", lambda a: dict(target_modules="all-linear", r=4, lora_alpha=8))),
    ("qwen3_moe", Variant("experts", lambda a: dict(target_modules=["q_proj"], target_parameters=["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], r=4, lora_alpha=8))),
]

CASES = [pytest.param(a, v, id=f"{a.name}-{v.name}") for v in VARIANTS for a in ARCHS.values() if v.applies(a)]
CASES += [pytest.param({**ARCHS, **MOE}[name], v, id=f"{name}-{v.name}") for name, v in EXTRA]


class _Bases:
    """One saved base per (architecture, kind), built on first use and kept in memory too, so each
    case copies a model instead of loading one."""

    def __init__(self, root: Path):
        self.root = root
        self.built: dict[tuple[str, str], tuple[Path, Path, object]] = {}

    def get(self, arch: Arch, kind: str):
        """(folder hubkit merges into, folder peft's reference loads, in-memory model of the latter)."""
        key = (arch.name, kind)
        if key not in self.built:
            if kind == "resized":
                plain, _, _ = self.get(arch, "default")
                model = self.resize(AutoModelForCausalLM.from_pretrained(plain, dtype=torch.float32))
                ref = self.root / f"{arch.name}-resized"
                model.save_pretrained(ref)
                self.built[key] = (plain, ref, model)
            else:
                torch.manual_seed(0)
                cfg = arch.config(**({"tie_word_embeddings": True} if kind == "tied" else {}))
                model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
                path = self.root / f"{arch.name}-{kind}"
                model.save_pretrained(path)
                self.built[key] = (path, path, model)
        return self.built[key]

    @staticmethod
    def resize(model):
        torch.manual_seed(2)
        model.resize_token_embeddings(RESIZED, mean_resizing=False)
        return model


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    return _Bases(tmp_path_factory.mktemp("bases"))


@pytest.fixture(scope="module", autouse=True)
def _quick():
    """Models this small run fastest on one thread (a second only waits for the first), and the
    README peft writes beside each adapter (most of save_pretrained's time) plays no part here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(PeftModel, "create_or_update_model_card", lambda self, output_dir: None)
        yield
    torch.set_num_threads(before)


def _train(model) -> None:
    """Move every trainable tensor off its initial value (modules_to_save copies start equal to
    the base, trainable token rows to the embedding's), as training would."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


def _logits(model):
    with torch.no_grad():
        return model(TOKENS).logits


@pytest.mark.parametrize(("arch", "variant"), CASES)
def test_merge_matrix(arch: Arch, variant: Variant, bases, tmp_path):
    hub_base, ref_base, ref_model = bases.get(arch, variant.base)
    if variant.base == "resized":
        # trained as people do: the original base resized in memory, so peft sees the new size
        model = _Bases.resize(AutoModelForCausalLM.from_pretrained(hub_base, dtype=torch.float32))
    else:
        model = copy.deepcopy(ref_model)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trained = get_peft_model(model, LoraConfig(**{"init_lora_weights": False, **variant.lora(arch)}))
    _train(trained)
    adapter = tmp_path / "adapter"
    trained.save_pretrained(adapter)
    out = tmp_path / "out"

    refusal = variant.refused(arch)
    if refusal is not None:
        with pytest.raises(MergeError, match=refusal) as err:
            merge(adapter, out, base=hub_base, dtype="float32")
        assert "\n" not in err.value.message
        assert not out.exists() and not list(tmp_path.glob(".out.*"))
        return

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = PeftModel.from_pretrained(copy.deepcopy(ref_model), str(adapter)).eval()
    expected_logits = _logits(reference)
    peft_merged = reference.merge_and_unload()
    result = merge(adapter, out, base=hub_base, dtype="float32")

    loaded, info = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    torch.testing.assert_close(_logits(loaded.eval()), expected_logits, atol=1e-4, rtol=1e-4)

    ours, theirs = loaded.state_dict(), peft_merged.state_dict()
    assert set(ours) == set(theirs)
    differ = sorted(k for k in theirs if ours[k].shape != theirs[k].shape or not torch.allclose(ours[k], theirs[k], atol=1e-5, rtol=1e-4))
    if differ:
        # Only a tied matrix that the adapter changes on one side: peft's merge writes the change
        # into both sides; hubkit unties. peft's merged model then disagrees with the adapter.
        assert result.plan.untied, differ
        assert set(differ) <= {f"{arch.embed}.weight", "lm_head.weight"}, differ
        assert (_logits(peft_merged) - expected_logits).abs().max() > 1e-3
    cfg = json.loads((out / "config.json").read_text())
    if variant.base == "resized":
        assert cfg["vocab_size"] == RESIZED
