"""Real GGUF files for the tests, written with llama.cpp's own `gguf` package.

A tiny llama-shaped model (2 layers, hidden 64, vocabulary of 96 tokens) laid out the way
llama.cpp's convert_hf_to_gguf.py writes one: llama.cpp tensor names, q/k rows permuted for its
rotary layout, 1-D norms kept in F32, every matrix in the chosen type (F32, F16, or Q8_0 through
`gguf.quants.quantize`), the file type and a tokenizer in the metadata. `weights` may come from a
real transformers model, so that loading the file back through transformers can be compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, VOCAB, CONTEXT = 64, 2, 4, 2, 128, 96, 256
ROPE_THETA, RMS_EPS = 10000.0, 1e-5


def random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """HF-named float32 weights of the tiny llama (what `LlamaForCausalLM.state_dict()` holds)."""
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS
    w = {"model.embed_tokens.weight": rng.normal(0, 0.02, (VOCAB, HIDDEN)), "model.norm.weight": 1 + rng.normal(0, 0.1, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, HIDDEN)
        w[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, HIDDEN)
        w[p + "self_attn.q_proj.weight"] = rng.normal(0, 0.05, (HEADS * head_dim, HIDDEN))
        w[p + "self_attn.k_proj.weight"] = rng.normal(0, 0.05, (KV_HEADS * head_dim, HIDDEN))
        w[p + "self_attn.v_proj.weight"] = rng.normal(0, 0.05, (KV_HEADS * head_dim, HIDDEN))
        w[p + "self_attn.o_proj.weight"] = rng.normal(0, 0.05, (HIDDEN, HEADS * head_dim))
        w[p + "mlp.gate_proj.weight"] = rng.normal(0, 0.05, (FFN, HIDDEN))
        w[p + "mlp.up_proj.weight"] = rng.normal(0, 0.05, (FFN, HIDDEN))
        w[p + "mlp.down_proj.weight"] = rng.normal(0, 0.05, (HIDDEN, FFN))
    w["lm_head.weight"] = rng.normal(0, 0.02, (VOCAB, HIDDEN))
    return {k: v.astype(np.float32) for k, v in w.items()}


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp stores q/k with each head's rotary halves interleaved (convert_hf_to_gguf's permute)
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(weights: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The weights under llama.cpp's names, in its order."""
    out = [("token_embd.weight", weights["model.embed_tokens.weight"])]
    for i in range(LAYERS):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out += [
            (b + "attn_norm.weight", weights[p + "input_layernorm.weight"]),
            (b + "attn_q.weight", _permute(weights[p + "self_attn.q_proj.weight"], HEADS)),
            (b + "attn_k.weight", _permute(weights[p + "self_attn.k_proj.weight"], KV_HEADS)),
            (b + "attn_v.weight", weights[p + "self_attn.v_proj.weight"]),
            (b + "attn_output.weight", weights[p + "self_attn.o_proj.weight"]),
            (b + "ffn_norm.weight", weights[p + "post_attention_layernorm.weight"]),
            (b + "ffn_gate.weight", weights[p + "mlp.gate_proj.weight"]),
            (b + "ffn_up.weight", weights[p + "mlp.up_proj.weight"]),
            (b + "ffn_down.weight", weights[p + "mlp.down_proj.weight"]),
        ]
    out += [("output_norm.weight", weights["model.norm.weight"]), ("output.weight", weights["lm_head.weight"])]
    return out


FILE_TYPES = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0"}


def write_tiny_llama(
    path: str | Path,
    qtype: str,
    *,
    weights: dict[str, np.ndarray] | None = None,
    name: str = "Tiny Llama",
    tokenizer: bool = True,
    chat_template: str | None = None,
    split_max_tensors: int = 0,
    arch: str = "llama",
    file_type: bool = True,
) -> list[Path]:
    """Write the tiny llama as GGUF with every matrix in `qtype` (F32, F16 or Q8_0); returns the
    files written (several with split_max_tensors)."""
    import gguf

    path = Path(path)
    weights = weights if weights is not None else random_weights()
    writer = gguf.GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    writer.add_name(name)
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_vocab_size(VOCAB)
    if file_type:
        writer.add_file_type(gguf.LlamaFileType[FILE_TYPES[qtype]])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if tokenizer:
        tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(64)] + ["▁" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["▁the", "▁of", "▁and"]
        assert len(tokens) == VOCAB
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * 3 + [0.0] * 64 + [-float(i) for i in range(VOCAB - 67)])
        writer.add_token_types([2, 3, 3] + [6] * 64 + [1] * (VOCAB - 67))
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
    if chat_template:
        writer.add_chat_template(chat_template)
    target = gguf.GGMLQuantizationType[qtype]
    for tname, w in gguf_tensors(weights):
        if w.ndim == 1 or target == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(tname, w.astype(np.float32))
        elif target == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(tname, w.astype(np.float16))
        else:
            writer.add_tensor(tname, gguf.quants.quantize(w, target), raw_dtype=target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        parent = path.parent
        return sorted(parent.glob(f"{path.stem}-*-of-*.gguf"))
    return [path]


def n_params() -> int:
    return sum(int(np.prod(w.shape)) for w in random_weights().values())
