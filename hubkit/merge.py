"""`hubkit merge`: fold a LoRA adapter into its base, tensor by tensor, in bounded memory.

peft's `merge_and_unload` needs the whole model in memory. Here the base checkpoint is read one
tensor at a time, every adapted weight gets W' = W + scale * (B @ A) in float32 (the math peft
does), and the result is written into output shards as it goes. Memory stays at a few tensors
plus the adapter, whatever the model size.

The plan decides module by module what peft decides when it loads the adapter: which layers store
their weight transposed (GPT-2's Conv1D, whatever `fan_in_fan_out` the config saved), which
checkpoint tensor a name the model (transformers 5) uses lives in (renamed, or one tensor per
expert of a fused MoE parameter), which whole tensors the adapter replaces, whether tied embeddings
must come apart, and which LoRA variants no merged weight can express (refused by name).

Three threads overlap the work: a reader (plain `readinto` of the tensor's bytes: memory-mapping
the shard would leave every page it touched resident), a pool of workers doing the math on
chunks of rows (numpy releases the GIL in its kernels), and a writer that streams bytes into
shard files whose headers are known in advance (every output shape and dtype is known before the
first byte is written), handing each window of them to the disk as it goes.

Everything is planned and checked before anything is written: a target module missing from the
base or a shape that does not fit fails naming the tensor. Output goes to a hidden temporary
folder that is renamed into place only when complete, so an interrupted merge never leaves a
folder that looks finished. Outputs are byte-deterministic (base tensor order, fixed metadata,
no timestamps), so merging the same inputs twice gives identical files.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import queue
import re
import shutil
import struct
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .errors import InspectError, MergeError
from .inspection import DTYPE_BYTES, TOKENIZER_FILES, TORCH_DTYPE_NAMES, TensorInfo, checkpoint_shards, read_safetensors_header, sha256_file

LINEAGE_FILE = "hubkit_merge.json"
OUT_DTYPES = {"float16": "F16", "bfloat16": "BF16", "float32": "F32"}
_FLOAT_CODES = {"F16", "BF16", "F32", "F64"}
_PREFIX = "base_model.model."
_FACTOR = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.(?P<name>[^.]+))?(?:\.weight)?$")
_QUEUE_DEPTH = 3
_PARTIAL_MARKER = ".hubkit-partial"  # inside a merge's temporary folder: only such folders are ever swept

# LoRA variants whose forward pass no merged weight reproduces, or that need more than the adapter
# and the base to merge: refused by the config field that switches them on, before anything runs.
_REFUSED_FIELDS = {
    "use_dora": "DoRA (use_dora): hubkit does not merge magnitude vectors",
    "alora_invocation_tokens": "aLoRA (alora_invocation_tokens): the adapter acts only from its invocation tokens on, which no merged weight can express; peft refuses too",
    "arrow_config": "Arrow (arrow_config): the adapter routes each token between LoRA experts; peft refuses too",
    "use_qalora": "QALoRA (use_qalora): its A factor reads group-pooled inputs of a GPTQ-quantized base",
    "kasa_config": "KaSA (kasa_config): peft first truncates every target weight by SVD",
    "layer_replication": "layer_replication: the merged model would need the replicated layers, which a checkpoint of the base's shape cannot hold",
}
# init_lora_weights values after which peft rewrites the base weights when it loads the adapter
# (W - scale * B0 @ A0 from an SVD/QR or quantization of W), so W + scale * B @ A is not the adapter.
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq", "lora_ga")
_VARIANT_TENSORS = {"lora_magnitude_vector": "DoRA", "lora_diag": "KaSA"}
# Training-time state of variants whose inference forward pass (and peft's merge) is plain LoRA.
_TRAINING_ONLY = {"lora_velora_embed": "velora_config", "lora_monteclora_sampler": "monteclora_config"}

# Layers stored as (in, out) by transformers' Conv1D: peft forces fan_in_fan_out on these and off on
# every nn.Linear of the same model, but writes a single value to adapter_config.json.
_CONV1D_NAMES = frozenset({"c_attn", "q_attn", "c_proj", "c_fc"})
_CONV1D_MODELS = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
# Model (transformers 5) names -> the names checkpoints keep (transformers renames them on load).
_RENAMES = {
    "gpt_neox": ((r"^lm_head\.", "embed_out."),),
    "mixtral": ((r"\.mlp\.", ".block_sparse_moe."),),
}
# MoE layers that transformers 5 fuses into 3-D parameters while checkpoints keep one 2-D tensor
# per expert and projection: the experts module's parameters in definition order (peft nests its
# wrappers in that order) and the projections each is concatenated from, along its rows.
_FUSED_EXPERTS = {
    "mixtral": (("gate_up_proj", "down_proj"), {"gate_up_proj": ("w1", "w3"), "down_proj": ("w2",)}),
    "qwen2_moe": (("gate_up_proj", "down_proj"), {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}),
    "qwen3_moe": (("gate_up_proj", "down_proj"), {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)}),
}
_EMBED_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "embed_in.weight")


def parse_size(text: str | int) -> int:
    """'5GB' -> 5_000_000_000 (decimal units, as transformers uses); '500MiB' binary."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise MergeError(f"shard size {text!r}: expected a size like 5GB or 500MB")
    unit = (m[2] or "B").upper()
    mult = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}[unit]
    return int(float(m[1]) * mult)


# -- the plan ------------------------------------------------------------------------------------


@dataclass
class LoraPair:
    """One low-rank update of one checkpoint tensor: W += scale * (B @ A), transposed for
    embeddings and Conv1D weights, restricted to one expert and a band of rows for fused experts."""

    module: str  # the adapted module or parameter, as the model (and peft) names it
    a: str  # adapter tensor names
    b: str
    embedding: bool
    rank: int
    alpha: float
    scale: float
    target: str  # checkpoint tensor it updates
    fan_in_fan_out: bool = False  # weight stored as (in, out), as GPT-2's Conv1D does
    experts: int = 1  # A is (experts * r, in) and B (out, r * experts), as peft stores a 3-D parameter's factors
    expert: int = 0
    rows: tuple[int, int] | None = None  # rows of the update this checkpoint tensor holds (a fused projection)
    blocks_a: int = 1  # BD-LoRA: A (or B) stored as the diagonal blocks of a block-diagonal matrix
    blocks_b: int = 1


@dataclass
class OutTensor:
    name: str
    src: Path
    src_start: int  # absolute byte offset of the data in src
    src_dtype: str
    shape: tuple[int, ...]
    dtype: str  # output safetensors dtype
    shard: int = 0
    updates: list[LoraPair] = field(default_factory=list)
    bias_adds: list[tuple[str, float]] = field(default_factory=list)  # lora_bias: + scale * lora_B.bias
    token_rows: tuple[str, tuple[int, ...]] | None = None  # trainable tokens: these rows replaced
    replace: str | None = None  # adapter tensor read instead of the base's (modules_to_save, biases, resized embeddings)

    @property
    def in_bytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.src_dtype]

    @property
    def out_bytes(self) -> int:
        return math.prod(self.shape) * DTYPE_BYTES[self.dtype]

    @property
    def changed(self) -> bool:
        return bool(self.updates or self.bias_adds or self.token_rows)


@dataclass
class MergePlan:
    base_dir: Path
    adapter_dir: Path
    adapter_file: Path
    adapter_config: dict
    base_config: dict
    dtype: str
    tensors: list[OutTensor]
    shard_names: list[str]
    pairs: list[LoraPair]
    replaced: list[str]
    base_ref: str
    base_revision: str | None
    adapter_ref: str
    untied: bool = False  # tied embeddings were written as two tensors (see plan_merge)
    vocab_rows: int | None = None  # the adapter resized the vocabulary
    base_commit: str | None = None  # the Hub commit the base snapshot is, when it came from a Hub
    adapter_commit: str | None = None
    decisions: list[str] = field(default_factory=list)  # what was decided per module, for the lineage file

    @property
    def bytes_in(self) -> int:
        return sum(t.in_bytes for t in self.tensors)

    @property
    def bytes_out(self) -> int:
        return sum(t.out_bytes for t in self.tensors)


def _resolve(ref, revision, what, endpoint):
    """A local folder as is; a Hub id through huggingface_hub's cache (see hub.client.resolve)."""
    from .hub.client import resolve

    return resolve(ref, revision=revision, what=what, endpoint=endpoint, error=MergeError)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path}: missing ({what})") from None
    except json.JSONDecodeError as exc:
        raise MergeError(f"{path}: not valid JSON ({what}): line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise MergeError(f"{path}: expected a JSON object ({what})")
    return data


def _pattern_value(patterns: dict, module: str, default):
    """peft's rule for rank_pattern / alpha_pattern: the first key that matches the end of the
    module name on a dot boundary."""
    for key, value in (patterns or {}).items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def _refuse_variants(acfg: dict, cfg_path: Path) -> None:
    """Raise MergeError naming the first LoRA variant that hubkit does not merge."""
    hint = "Use the adapter unmerged (PeftModel), or merge it with peft where peft can."
    for key, what in _REFUSED_FIELDS.items():
        if acfg.get(key):
            raise MergeError(f"{cfg_path}: {key} is set: merging {what}", hint=hint)
    init = acfg.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS):
        raise MergeError(
            f"{cfg_path}: init_lora_weights is {init!r}: peft rebuilds a residual base from each target weight when it loads such an adapter, so it is not W + scale * B @ A on the base",
            hint="Save it converted to plain LoRA (peft's path_initial_model_for_weight_conversion), then merge that.",
        )
    r = acfg.get("r")
    if not isinstance(r, (int, float)) or isinstance(r, bool) or r <= 0:
        raise MergeError(f"{cfg_path}: r is {r!r}: a LoRA rank must be a positive integer (scale = lora_alpha / r)", hint="Is this adapter_config.json intact? peft cannot build it either.")


class _Names:
    """Where a tensor the model (and so peft) names lives in the checkpoint: the same name, a
    renamed one (transformers 5 renames some on load), or one 2-D tensor per expert of a fused
    3-D MoE parameter."""

    def __init__(self, model_type: str | None, tensors: dict):
        self.model_type = model_type or "?"
        self.tensors = tensors

    def single(self, name: str) -> str | None:
        if name in self.tensors:
            return name
        for pattern, repl in _RENAMES.get(self.model_type, ()):
            renamed = re.sub(pattern, repl, name)
            if renamed != name and renamed in self.tensors:
                return renamed
        return None

    def renamed(self, name: str) -> str:
        for pattern, repl in _RENAMES.get(self.model_type, ()):
            name = re.sub(pattern, repl, name)
        return name

    def expert_params(self, module: str) -> tuple[str, ...]:
        """The fused parameters of an experts module, in definition order (empty if not one)."""
        if module.rsplit(".", 1)[-1] != "experts" or self.model_type not in _FUSED_EXPERTS:
            return ()
        return _FUSED_EXPERTS[self.model_type][0]

    def fused(self, module: str, param: str) -> list[tuple[str, int, tuple[int, int]]]:
        """(checkpoint tensor, expert, rows of the fused parameter it holds) for each slice of
        `module.param`; empty when this checkpoint does not store it that way."""
        parts = _FUSED_EXPERTS.get(self.model_type, ((), {}))[1].get(param)
        if not parts:
            return []
        prefix = self.renamed(module + ".")[:-1]
        out = []
        expert = 0
        while True:
            names = [f"{prefix}.{expert}.{p}.weight" for p in parts]
            if not all(n in self.tensors for n in names):
                break
            row = 0
            for n in names:
                rows = self.tensors[n][2].shape[0]
                out.append((n, expert, (row, row + rows)))
                row += rows
            expert += 1
        return out


def _classify(aheader, acfg: dict, adapter_file: Path):
    """Sort the adapter's tensors: LoRA factors per module, lora_bias vectors, trainable-token rows,
    whole tensors that replace a base tensor (trained, or the frozen weight an embedding LoRA
    sits on), and training-only state. Refuses variant tensors by name."""
    factors: dict[str, dict[str, str]] = {}
    lora_bias: dict[str, str] = {}
    tokens: dict[str, str] = {}
    trained: dict[str, str] = {}  # model tensor name -> adapter tensor, from modules_to_save / bias training
    plain: dict[str, str] = {}
    frozen: dict[str, str] = {}  # the base weight as the adapter saw it (resized vocabularies)
    for name in aheader.tensors:
        if not name.startswith(_PREFIX):
            raise MergeError(f"{adapter_file}: tensor {name!r} does not start with {_PREFIX!r}; not a peft causal-LM adapter?")
        key = name[len(_PREFIX):]
        parts = key.split(".")
        if key.endswith(".lora_B.bias"):
            lora_bias[key[: -len(".lora_B.bias")]] = name
            continue
        m = _FACTOR.match(key)
        if m:
            factors.setdefault(m["module"], {})[m["kind"]] = name
            continue
        if key.endswith(".token_adapter.trainable_tokens_delta"):
            tokens[key[: -len(".token_adapter.trainable_tokens_delta")]] = name
            continue
        variant = next((v for p in parts for k, v in _VARIANT_TENSORS.items() if p == k), None)
        if variant:
            raise MergeError(f"{adapter_file}: {name} is a {variant} tensor: merging {variant} adapters is not supported", hint="Use the adapter unmerged (PeftModel).")
        state = next((cfg_key for p in parts for k, cfg_key in _TRAINING_ONLY.items() if p == k), None)
        if state is not None:
            if acfg.get(state):
                continue  # used by the backward pass only; the merged update is plain LoRA (as in peft)
            raise MergeError(f"{adapter_file}: {name} belongs to a LoRA variant that adapter_config.json does not declare ({state})")
        if any(p.startswith("lora_") for p in parts):
            raise MergeError(f"{adapter_file}: {name} is a LoRA-variant tensor hubkit does not know how to merge", hint="Use the adapter unmerged (PeftModel), or peft's merge_and_unload.")
        if ".original_module." in key:
            frozen.setdefault(key.replace(".original_module.", "."), name)
        elif ".modules_to_save." in key:
            trained[key.replace(".modules_to_save.", ".")] = name
        elif ".base_layer." in key:
            target = re.sub(r"(\.base_layer)+\.", ".", key)
            if target.endswith(".weight"):
                frozen[target] = name  # saved with a LoRA on an embedding or head
            else:
                plain.setdefault(target, name)  # a bias trained with bias="all" / "lora_only"
        else:
            plain.setdefault(key, name)
    for key, name in plain.items():
        trained.setdefault(key, name)  # `x.modules_to_save.weight` wins over its copy `x.weight`
    return factors, lora_bias, tokens, trained, frozen


def _token_indices(acfg: dict, module: str, cfg_path: Path) -> list[int]:
    spec = acfg.get("trainable_token_indices")
    if isinstance(spec, dict):
        found = [v for k, v in spec.items() if module == k or module.endswith("." + k)]
        if len(found) != 1:
            raise MergeError(f"{cfg_path}: trainable_token_indices names no single entry for {module}")
        spec = found[0]
    if not isinstance(spec, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in spec):
        raise MergeError(f"{cfg_path}: trainable_token_indices: expected a list of token ids for {module}, got {spec!r}")
    return spec


def plan_merge(adapter: str | Path, base: str | Path | None = None, *, revision: str | None = None, dtype: str = "float16", shard_size: str | int = "5GB", endpoint: str | None = None) -> MergePlan:
    """Read configs and safetensors headers (no tensor data) and decide, module by module, how the
    adapter maps onto the base checkpoint. Returns the MergePlan; raises MergeError naming the
    first tensor or setting that cannot be merged exactly as the adapter computes."""
    if dtype not in OUT_DTYPES:
        raise MergeError(f"dtype {dtype!r}: expected one of {', '.join(OUT_DTYPES)}")
    limit = parse_size(shard_size)
    adapter_src = _resolve(adapter, None, "adapter", endpoint)
    adapter_dir = adapter_src.path
    cfg_path = adapter_dir / "adapter_config.json"
    acfg = _read_json(cfg_path, "peft adapter config")
    if str(acfg.get("peft_type", "")).upper() != "LORA":
        raise MergeError(f"{cfg_path}: peft_type {acfg.get('peft_type')!r}: hubkit merges LoRA adapters only")
    _refuse_variants(acfg, cfg_path)
    base_ref = str(base) if base else acfg.get("base_model_name_or_path")
    if not base_ref:
        raise MergeError(f"{cfg_path}: no base_model_name_or_path", hint="Pass --base.")
    base_revision = revision or (acfg.get("revision") if not base else None)
    base_src = _resolve(base_ref, base_revision, "base model", endpoint)
    base_dir = base_src.path
    bcfg = _read_json(base_dir / "config.json", "model config")
    model_type = bcfg.get("model_type")

    adapter_file = adapter_dir / "adapter_model.safetensors"
    if not adapter_file.is_file():
        if (adapter_dir / "adapter_model.bin").is_file():
            raise MergeError(f"{adapter_dir}: only a pickled adapter_model.bin; hubkit does not unpickle weights", hint="Re-save it with safe_serialization=True.")
        raise MergeError(f"{adapter_file}: missing")
    try:
        aheader = read_safetensors_header(adapter_file)
        shards = checkpoint_shards(base_dir)
        bheaders = [read_safetensors_header(base_dir / s) for s in shards]
    except InspectError as exc:
        raise MergeError(exc.message, hint=exc.hint) from None

    base_tensors: dict[str, tuple[Path, int, TensorInfo]] = {}
    order: list[str] = []
    for h in bheaders:
        for info in sorted(h.tensors.values(), key=lambda t: t.offsets[0]):
            base_tensors[info.name] = (h.path, h.data_start, info)
            order.append(info.name)
    ainfo = aheader.tensors
    factors, lora_bias, tokens, trained, frozen = _classify(aheader, acfg, adapter_file)
    decisions: list[str] = []
    wrong_base = "Is this the base the adapter was trained on? Pass --base."

    # Tied input/output embeddings. The checkpoint has one matrix; the adapter's forward pass may
    # change only one side (a LoRA or modules_to_save on either), and then the output gets its own
    # head tensor (config.tie_word_embeddings false). peft's merge_and_unload would write into the
    # shared matrix and change both sides.
    embed_key = next((k for k in order if k.endswith(_EMBED_SUFFIXES)), None)
    head_key = next((k for k in ("lm_head.weight", "embed_out.weight") if k in base_tensors), "embed_out.weight" if model_type == "gpt_neox" else "lm_head.weight")
    head_missing = head_key not in base_tensors
    tied = embed_key is not None and bool(bcfg.get("tie_word_embeddings", head_missing))
    names = _Names(model_type, base_tensors)
    resolvable = dict(base_tensors)
    if tied and head_missing:
        resolvable[head_key] = base_tensors[embed_key]  # provisionally: written only if untied below
    names.tensors = resolvable

    def where(name: str, what: str) -> str:
        found = names.single(name)
        if found is None:
            raise MergeError(f"{adapter_file}: {what} targets {name}, which is not in the base checkpoint {base_dir} (model_type {model_type})", hint=wrong_base)
        return found

    # Whole tensors: the trained one wins; the frozen one is what a LoRA on that module sits on.
    start: dict[str, str] = {}  # checkpoint name -> adapter tensor it starts from
    frozen_at: dict[str, str] = {}
    for key, name in frozen.items():
        frozen_at[where(key, name)] = name
    for key, name in trained.items():
        start[where(key, f"{name} (modules_to_save or a trained bias)")] = name
    for ck, name in frozen_at.items():
        start.setdefault(ck, name)

    # LoRA factor pairs, each resolved to the checkpoint tensor(s) it updates.
    conv1d = model_type in _CONV1D_MODELS
    if acfg.get("fan_in_fan_out") and not conv1d:
        raise MergeError(f"{cfg_path}: fan_in_fan_out is true but hubkit does not know which layers of model_type {model_type!r} are Conv1D (peft decides it per layer)", hint="Use peft's merge_and_unload for this adapter.")
    if conv1d:
        decisions.append(f"fan_in_fan_out per layer (Conv1D: {', '.join(sorted(_CONV1D_NAMES))}); adapter_config.json says {bool(acfg.get('fan_in_fan_out'))}")
    targets_params = [str(t) for t in (acfg.get("target_parameters") or [])]
    bd = acfg.get("use_bdlora") or {}
    rslora = bool(acfg.get("use_rslora"))
    pairs: list[LoraPair] = []
    pair_of_module: dict[str, LoraPair] = {}
    for module in sorted(factors):
        kinds = factors[module]
        embedding = "lora_embedding_A" in kinds
        a_key, b_key = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A", "lora_B")
        if a_key not in kinds or b_key not in kinds:
            raise MergeError(f"{adapter_file}: {module} has {', '.join(sorted(kinds))} but not both LoRA factors")
        a_name, b_name = kinds[a_key], kinds[b_key]
        a, b = ainfo[a_name], ainfo[b_name]
        if len(a.shape) != 2 or len(b.shape) != 2:
            raise MergeError(f"{adapter_file}: {a_name} {list(a.shape)} and {b_name} {list(b.shape)} are not LoRA factors")
        if a.shape[0] == 0 or b.shape[1] == 0:
            raise MergeError(f"{adapter_file}: {a_name} has rank 0: nothing to merge and no defined scale", hint="Is the adapter intact? A LoRA rank must be positive.")
        depth = 0
        base_module = module
        while base_module.endswith(".base_layer"):  # nested peft wrappers, one per targeted parameter
            base_module, depth = base_module[: -len(".base_layer")], depth + 1
        param_targeted = [p for p in names.expert_params(base_module) if any(f"{base_module}.{p}" == t or f"{base_module}.{p}".endswith("." + t) for t in targets_params)]
        weight_is_param = any(f"{base_module}.weight" == t or f"{base_module}.weight".endswith("." + t) for t in targets_params)
        single = names.single(f"{base_module}.weight") if depth == 0 else None
        alpha_default = acfg.get("lora_alpha", 8)
        if single is not None and not param_targeted:
            pattern_key = f"{base_module}.weight" if weight_is_param else base_module
            blocks_a = blocks_b = 1
            if bd and not embedding:
                nb = int(bd.get("nblocks") or 1)
                in_a = any(p in base_module for p in bd.get("target_modules_bd_a") or [])
                in_b = any(p in base_module for p in bd.get("target_modules_bd_b") or [])
                blocks_a, blocks_b = (nb if in_a else 1), (nb if in_b else 1)
            rank = a.shape[0]
            rank_b = b.shape[1] * blocks_b
            fifo = conv1d and not embedding and base_module.rsplit(".", 1)[-1] in _CONV1D_NAMES
            if rank_b != rank:
                raise MergeError(f"{adapter_file}: {a_name} {list(a.shape)} and {b_name} {list(b.shape)} are not LoRA factors of one rank")
            in_f, out_f = a.shape[1] * blocks_a, b.shape[0]
            want = (in_f, out_f) if (embedding or fifo) else (out_f, in_f)
            alpha = float(_pattern_value(acfg.get("alpha_pattern") or {}, pattern_key, alpha_default))
            pair = LoraPair(module, a_name, b_name, embedding, rank, alpha, alpha / (math.sqrt(rank) if rslora else rank), single, fifo, blocks_a=blocks_a, blocks_b=blocks_b)
            checks = [(pair, want)]
        elif param_targeted and depth < len(param_targeted):
            param = param_targeted[len(param_targeted) - 1 - depth]
            slices = names.fused(base_module, param)
            if not slices:
                raise MergeError(f"{adapter_file}: {a_name} adapts {base_module}.{param}, which this checkpoint does not store as one tensor per expert (model_type {model_type})", hint="Use peft's merge_and_unload for this adapter.")
            experts = 1 + max(s[1] for s in slices)
            if a.shape[0] % experts or b.shape[1] != a.shape[0]:
                raise MergeError(f"{adapter_file}: {a_name} {list(a.shape)} and {b_name} {list(b.shape)} do not split into {experts} experts' LoRA factors")
            rank = a.shape[0] // experts
            alpha = float(_pattern_value(acfg.get("alpha_pattern") or {}, f"{base_module}.{param}", alpha_default))
            scale = alpha / (math.sqrt(rank) if rslora else rank)
            checks = []
            for ck, expert, rows in slices:
                pair = LoraPair(f"{base_module}.{param}", a_name, b_name, False, rank, alpha, scale, ck, experts=experts, expert=expert, rows=rows)
                checks.append((pair, (rows[1] - rows[0], a.shape[1])))
            full_rows = max(s[2][1] for s in slices)
            if b.shape[0] != full_rows:
                raise MergeError(f"{adapter_file}: {b_name} has {b.shape[0]} output rows, {base_module}.{param} has {full_rows} per expert in {base_dir}", hint=wrong_base)
            decisions.append(f"{base_module}.{param}: fused parameter, merged into {len(slices)} per-expert tensors")
        else:
            raise MergeError(f"{adapter_file}: {a_name} targets {base_module}.weight, which is not in the base checkpoint {base_dir} (model_type {model_type})", hint=wrong_base)
        for pair, want in checks:
            have = ainfo[start[pair.target]].shape if pair.target in start else resolvable[pair.target][2].shape
            if tuple(have) != tuple(want):
                raise MergeError(
                    f"{adapter_file}: {a_name} does not fit the base: the update has shape {list(want)}, base tensor {pair.target} has {list(have)}",
                    hint="Is this the base the adapter was trained on (vocabulary size, model size)? Pass --base.",
                )
            pairs.append(pair)
        pair_of_module[module] = checks[0][0]

    updates: dict[str, list[LoraPair]] = {}
    for p in pairs:
        updates.setdefault(p.target, []).append(p)

    # lora_bias: B's bias, scaled, lands on the base layer's bias; peft refuses a layer without one.
    bias_adds: dict[str, list[tuple[str, float]]] = {}
    for module, name in sorted(lora_bias.items()):
        pair = pair_of_module.get(module)
        if pair is None or pair.experts > 1:
            raise MergeError(f"{adapter_file}: {name} has no LoRA factors on a layer beside it")
        target = names.single(f"{module}.bias")
        if target is None:
            raise MergeError(f"{adapter_file}: {name}: lora_bias on {module}, whose base layer has no bias to merge it into (peft refuses too)", hint="Use the adapter unmerged (PeftModel).")
        shape = ainfo[start[target]].shape if target in start else resolvable[target][2].shape
        if tuple(shape) != tuple(ainfo[name].shape):
            raise MergeError(f"{adapter_file}: {name} has shape {list(ainfo[name].shape)}, base tensor {target} has {list(shape)}")
        bias_adds.setdefault(target, []).append((name, pair.scale))

    # Trainable tokens: rows of an embedding replaced by the adapter's.
    token_rows: dict[str, tuple[str, tuple[int, ...]]] = {}
    for module, name in sorted(tokens.items()):
        target = where(f"{module}.weight", name)
        indices = tuple(_token_indices(acfg, module, cfg_path))
        shape = ainfo[start[target]].shape if target in start else resolvable[target][2].shape
        got = tuple(ainfo[name].shape)
        if len(shape) != 2 or got != (len(indices), shape[1]) or any(not 0 <= i < shape[0] for i in indices):
            raise MergeError(f"{adapter_file}: {name} {list(got)} does not fit token ids {list(indices)} of {target} {list(shape)}")
        if target in updates:
            raise MergeError(f"{adapter_file}: {module} has both trainable tokens and a LoRA; hubkit does not merge that combination", hint="Use peft's merge_and_unload for this adapter.")
        token_rows[target] = (name, indices)

    # Untie when the two sides of a tied matrix end up different.
    untie = False
    if tied:
        head_changed = head_key in updates or head_key in start or head_key in token_rows
        embed_changed = embed_key in updates or (embed_key in start and start[embed_key] != frozen_at.get(embed_key)) or embed_key in bias_adds
        untie = head_changed or embed_changed
        if untie and head_missing:
            order.append(head_key)
            base_tensors[head_key] = base_tensors[embed_key]
            if head_key not in start and embed_key in frozen_at:
                start[head_key] = frozen_at[embed_key]  # the head is the embedding the adapter's LoRA sat on
            if embed_key in token_rows and head_key not in token_rows:
                if head_key in updates:
                    raise MergeError(f"{adapter_file}: trainable tokens on a tied embedding and a LoRA on the head; hubkit does not merge that combination", hint="Use peft's merge_and_unload for this adapter.")
                token_rows[head_key] = token_rows[embed_key]  # peft ties the head's token rows to the embedding's
        elif not untie and head_missing:
            for d in (start, updates, token_rows):
                d.pop(head_key, None)
        if untie:
            decisions.append(f"tied embeddings untied: {head_key} written from {embed_key} as the adapter's forward pass sees it")

    # A resized vocabulary: embedding and head must come out the same size.
    vocab_rows: int | None = None
    rows_of = {}
    for key in (embed_key, head_key):
        if key is None or key not in base_tensors:
            continue
        rows_of[key] = (ainfo[start[key]].shape if key in start else base_tensors[key][2].shape)[0]
    for key, name in start.items():
        want = tuple(resolvable[key][2].shape)
        got = tuple(ainfo[name].shape)
        resized = len(got) == 2 and len(want) == 2 and got[1] == want[1] and key in (embed_key, head_key)
        if got != want and not resized:
            raise MergeError(f"{adapter_file}: {name} has shape {list(got)}, base tensor {key} has {list(want)}")
        if resized and got != want:
            vocab_rows = got[0]
    if vocab_rows is not None and len(set(rows_of.values())) > 1:
        short = next(k for k, v in rows_of.items() if v != vocab_rows)
        raise MergeError(
            f"{adapter_file}: the adapter resized the vocabulary to {vocab_rows} rows but carries no {short.rsplit('.', 1)[0]} of that size (the base's has {rows_of[short]}); its new rows exist only in the resized model it was trained on",
            hint="Train with the resized layer in modules_to_save (or as a LoRA target) so the adapter carries it, or merge with peft into that resized model.",
        )

    out_code = OUT_DTYPES[dtype]
    tensors: list[OutTensor] = []
    for name in order:
        path, dstart, info = base_tensors[name]
        if info.dtype not in DTYPE_BYTES:
            raise MergeError(f"{path}: tensor {name} has dtype {info.dtype}, which hubkit cannot copy")
        replace = start.get(name)
        if replace is not None:  # read the adapter's tensor instead of the base's
            rinfo = ainfo[replace]
            path, dstart, info = adapter_file, aheader.data_start, TensorInfo(name, rinfo.dtype, rinfo.shape, rinfo.offsets)
        odt = out_code if info.dtype in _FLOAT_CODES else info.dtype
        t = OutTensor(name, path, dstart + info.offsets[0], info.dtype, tuple(info.shape), odt, updates=updates.get(name, []), bias_adds=bias_adds.get(name, []), token_rows=token_rows.get(name), replace=replace)
        if t.changed and info.dtype not in _FLOAT_CODES:
            raise MergeError(f"{path}: tensor {name} has dtype {info.dtype}; hubkit merges into floating-point tensors only")
        tensors.append(t)

    shard, used = 0, 0
    for t in tensors:
        if used and used + t.out_bytes > limit:
            shard, used = shard + 1, 0
        t.shard = shard
        used += t.out_bytes
    count = shard + 1
    shard_names = ["model.safetensors"] if count == 1 else [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
    return MergePlan(
        base_dir, adapter_dir, adapter_file, acfg, bcfg, dtype, tensors, shard_names, pairs, sorted(start), str(base_ref), base_revision, str(adapter),
        untied=untie, vocab_rows=vocab_rows, base_commit=base_src.commit, adapter_commit=adapter_src.commit, decisions=decisions,
    )


# -- safetensors writing --------------------------------------------------------------------------


def _shard_header(tensors: list[OutTensor]) -> bytes:
    table: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        table[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.out_bytes]}
        offset += t.out_bytes
    raw = json.dumps(table, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep tensor data 8-byte aligned
    return len(raw).to_bytes(8, "little") + raw


# -- execution -------------------------------------------------------------------------------------
#
# The math needs only fp16/bf16 <-> fp32 conversions and a rank-r matmul per chunk of rows, so it
# runs in numpy: `hubkit merge` works without torch (the light install), its resident memory is
# ~30 MB plus a few chunks (importing torch alone costs ~225 MB), and a pool of single-threaded
# numpy workers beat torch's kernels on the same pipeline (6.3 s vs 7.4 s, 1.1B). numpy's half
# casts are scalar loops, though, the slowest step; torch's are vectorized, so a big merge borrows
# just those from torch when it can (see _Torch).

CHUNK_BYTES = 4 * 1024 * 1024  # source bytes per unit of work
# Import torch for its casts only for merges converting this much: the import costs ~1.5 s of CPU
# and ~0.4 GB of memory, repaid (and under a tenth of what peft's merge would hold) from here on.
TORCH_FROM_BYTES = 4_000_000_000
SYNC_EVERY = 256 * 1024 * 1024  # without sync_file_range: fdatasync this often, so the last fsync is short
WRITE_WINDOW = 64 * 1024 * 1024  # with it: hand each this many written bytes to the disk at once


@dataclass
class MergeResult:
    out: Path
    plan: MergePlan
    seconds: float
    files: dict[str, str]  # shard -> sha256
    lineage: dict


class _Torch:
    """torch for its vectorized half <-> float casts (several times faster than numpy's scalar
    ones), used when it is already imported or, for merges big enough to repay the seconds an
    import takes, once a background thread has imported it; numpy until then, and without torch
    (the light install). Both round to nearest even, so the bytes written are the same whichever
    did a chunk (the matmul is always numpy's). While a merge runs torch keeps one thread per
    caller (the pool already spreads work over the cores); the caller's setting comes back at the
    end (hubkit eval merges in-process). HUBKIT_MERGE_NUMPY_ONLY=1 keeps torch out."""

    module = None
    loading = False
    active = False
    saved_threads: int | None = None
    lock = threading.Lock()

    @classmethod
    def begin(cls, work_bytes: int) -> None:
        import importlib.util
        import sys

        with cls.lock:
            cls.active = True
            if os.environ.get("HUBKIT_MERGE_NUMPY_ONLY"):
                cls.active = False
                return
            if cls.module is None and "torch" in sys.modules:
                cls.module = sys.modules["torch"]
            if cls.module is not None:
                cls._one_thread()
            elif work_bytes >= TORCH_FROM_BYTES and not cls.loading and importlib.util.find_spec("torch") is not None:
                cls.loading = True
                threading.Thread(target=cls._load, daemon=True, name="hubkit-import-torch").start()

    @classmethod
    def end(cls) -> None:
        with cls.lock:
            cls.active = False
            if cls.saved_threads is not None:
                cls.module.set_num_threads(cls.saved_threads)
                cls.saved_threads = None

    @classmethod
    def _one_thread(cls) -> None:
        if cls.saved_threads is None:
            cls.saved_threads = cls.module.get_num_threads()
            cls.module.set_num_threads(1)

    @classmethod
    def _load(cls) -> None:
        try:
            import torch
        except Exception:  # a broken torch install: numpy does the work
            return
        with cls.lock:
            cls.module = torch
            if cls.active:
                cls._one_thread()


def _torch():
    return _Torch.module if _Torch.active else None


def _to_f32(raw, code: str):
    import numpy as np

    if code == "F32":
        return raw.view(np.float32)  # raw is the reader's private buffer
    torch = _torch() if code in ("F16", "BF16") else None
    if torch is not None:
        half = torch.from_numpy(raw.view(np.int16)).view(torch.float16 if code == "F16" else torch.bfloat16)
        return half.float().numpy()
    if code == "F16":
        return raw.view(np.float16).astype(np.float32)
    if code == "BF16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if code == "F64":
        return raw.view(np.float64).astype(np.float32)
    raise MergeError(f"cannot convert {code} to float32")


def _from_f32(x, code: str):
    """float32 -> bytes of `code`, rounding to nearest even (as torch does)."""
    import numpy as np

    if code == "F32":
        return x.view(np.uint8)
    torch = _torch() if code in ("F16", "BF16") else None
    if torch is not None:
        return torch.from_numpy(x).to(torch.float16 if code == "F16" else torch.bfloat16).view(torch.int16).numpy().view(np.uint8)
    if code == "F16":
        return x.astype(np.float16).view(np.uint8)
    if code == "BF16":
        u = x.view(np.uint32)
        out = ((u + (((u >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
        nan = np.isnan(x)
        if nan.any():
            out[nan] = 0x7FC0
        return out.view(np.uint8)
    if code == "F64":
        return x.astype(np.float64).view(np.uint8)
    raise MergeError(f"cannot convert float32 to {code}")


def _chunks(t: OutTensor) -> Iterator[tuple[int, int]]:
    rows = t.shape[0] if t.shape else 1
    row_bytes = max(1, t.in_bytes // max(rows, 1))
    step = max(1, CHUNK_BYTES // row_bytes)
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def _read_exact(fh, view, what: str) -> None:
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise MergeError(f"{what}: file ended early (truncated?)")
        got += n


def _reader(plan: MergePlan, out_q: queue.Queue, stop: threading.Event, hashes: dict) -> None:
    """Read every base shard front to back (hashing it on the way) and hand out row chunks."""
    import numpy as np

    handles: dict[Path, object] = {}
    hashers: dict[Path, object] = {}
    hashed_to: dict[Path, int] = {}  # bytes of each base shard hashed so far, front to back
    try:
        for t in plan.tensors:
            if stop.is_set():
                return
            fh = handles.get(t.src)
            if fh is None:
                fh = handles[t.src] = open(t.src, "rb", buffering=0)  # noqa: SIM115
                if t.src != plan.adapter_file:
                    # the shard header first, so the hash covers the whole file
                    h = hashers[t.src] = hashlib.sha256()
                    head = fh.read(8)
                    (n,) = struct.unpack("<Q", head)
                    h.update(head)
                    h.update(fh.read(n))
                    hashed_to[t.src] = 8 + n
            sequential = t.src in hashers and hashed_to[t.src] == t.src_start
            if t.src in hashers and hashed_to[t.src] < t.src_start:
                hashers.pop(t.src)  # a gap (a tensor replaced by the adapter's): hash the file later
            fh.seek(t.src_start)
            row_bytes = t.in_bytes // (t.shape[0] if t.shape else 1) if t.shape and t.shape[0] else t.in_bytes
            for r0, r1 in _chunks(t):
                buf = np.empty((r1 - r0) * row_bytes if t.shape else t.in_bytes, dtype=np.uint8)
                _read_exact(fh, memoryview(buf), f"{t.src} ({t.name})")
                if sequential:
                    hashers[t.src].update(buf)
                out_q.put((t, r0, r1, buf))
            if sequential:
                hashed_to[t.src] += t.in_bytes
        for path, h in hashers.items():
            fh = handles[path]
            fh.seek(hashed_to[path])
            while block := fh.read(CHUNK_BYTES):  # bytes after the last tensor, if any
                h.update(block)
            hashes[path.name] = h.hexdigest()
        out_q.put(None)
    except OSError as exc:  # a read failure names the input file, not the output folder
        out_q.put(MergeError(f"{exc.filename or plan.base_dir}: cannot read: {exc.strerror or exc}"))
    except BaseException as exc:  # hand the failure to the main thread
        out_q.put(exc)
    finally:
        for fh in handles.values():
            fh.close()


class _Streamer:
    """Keeps the disk writing while the merge computes, without piling up dirty pages: every
    WRITE_WINDOW bytes are handed to the kernel for writeback at once (sync_file_range, which
    does not wait), and the window two back is waited for and dropped from the page cache.
    Where sync_file_range does not exist, an fdatasync every SYNC_EVERY bytes does the job."""

    def __init__(self, fh):
        self.fh = fh
        self.fd = fh.fileno()
        self.written = 0
        self.kicked = 0  # bytes handed to writeback so far
        self.inflight: deque = deque()
        self.ranged = hasattr(os, "sync_file_range")

    def wrote(self, n: int) -> None:
        self.written += n
        if self.written - self.kicked < (WRITE_WINDOW if self.ranged else SYNC_EVERY):
            return
        self.fh.flush()
        if not self.ranged:
            os.fdatasync(self.fd)
            self.kicked = self.written
            return
        start, size = self.kicked, self.written - self.kicked
        try:
            os.sync_file_range(self.fd, start, size, os.SYNC_FILE_RANGE_WRITE)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ESPIPE, errno.ENOSYS):
                raise
            self.ranged = False  # not a regular file on a file system that supports it
            return
        self.kicked = self.written
        self.inflight.append((start, size))
        while len(self.inflight) > 2:
            start, size = self.inflight.popleft()
            os.sync_file_range(self.fd, start, size, os.SYNC_FILE_RANGE_WAIT_BEFORE | os.SYNC_FILE_RANGE_WRITE | os.SYNC_FILE_RANGE_WAIT_AFTER)
            os.posix_fadvise(self.fd, start, size, os.POSIX_FADV_DONTNEED)


def _writer(plan: MergePlan, tmp: Path, in_q: queue.Queue, hashes: dict, errors: list, progress: Callable[[int], None]) -> None:
    by_shard: dict[int, list[OutTensor]] = {}
    for t in plan.tensors:
        by_shard.setdefault(t.shard, []).append(t)
    fh = h = stream = None
    current = -1

    def close():
        nonlocal fh
        fh.flush()
        os.fsync(fh.fileno())
        fh.close()
        hashes[plan.shard_names[current]] = h.hexdigest()
        fh = None

    try:
        while True:
            item = in_q.get()
            if item is None:
                break
            t, data, n_in = item
            if t.shard != current:
                if fh is not None:
                    close()
                current = t.shard
                fh = _create(tmp / plan.shard_names[current])
                stream = _Streamer(fh)
                h = hashlib.sha256()
                head = _shard_header(by_shard[current])
                fh.write(head)
                h.update(head)
                stream.wrote(len(head))
            fh.write(data)
            h.update(data)
            stream.wrote(len(data))
            progress(n_in)
        if fh is not None:
            close()
    except BaseException as exc:
        errors.append(exc)
        while in_q.get() is not None:  # keep draining so the producer never blocks forever
            pass
    finally:
        if fh is not None:
            fh.close()


class _Factors:
    """Adapter tensors read on demand as float32: LoRA factors shaped for one checkpoint tensor
    (block-diagonal factors expanded, one expert's slice of fused ones, B already multiplied by the
    scale), bias vectors and token rows. The few most recent are kept (workers may be on
    neighbouring tensors, and a fused parameter's factors serve every expert)."""

    def __init__(self, plan: MergePlan):
        self.header = read_safetensors_header(plan.adapter_file)
        self.fh = open(plan.adapter_file, "rb", buffering=0)  # noqa: SIM115
        self.raw: dict[str, object] = {}
        self.cache: dict[tuple, tuple] = {}
        self.lock = threading.Lock()

    def tensor(self, name: str):
        """float32 copy of one adapter tensor (callers hold the lock)."""
        import numpy as np

        hit = self.raw.get(name)
        if hit is not None:
            return hit
        info = self.header.tensors[name]
        raw = np.empty(info.offsets[1] - info.offsets[0], dtype=np.uint8)
        self.fh.seek(self.header.data_start + info.offsets[0])
        _read_exact(self.fh, memoryview(raw), f"{self.header.path} ({name})")
        out = _to_f32(raw, info.dtype).reshape(info.shape)
        if len(self.raw) >= 8:
            self.raw.pop(next(iter(self.raw)))
        self.raw[name] = out
        return out

    def vector(self, name: str):
        with self.lock:
            return self.tensor(name)

    def get(self, pair: LoraPair):
        import numpy as np

        key = (pair.a, pair.b, pair.expert, pair.rows, pair.scale)
        with self.lock:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
            a, b = self.tensor(pair.a), self.tensor(pair.b)
            if pair.blocks_a > 1:
                a = _block_diagonal(a, pair.blocks_a)
            if pair.blocks_b > 1:
                b = _block_diagonal(b, pair.blocks_b)
            if pair.experts > 1:  # peft: A rows are expert-major, B columns rank-major
                a = a.reshape(pair.experts, -1, a.shape[1])[pair.expert]
                b = b.reshape(b.shape[0], -1, pair.experts)[:, :, pair.expert]
            if pair.rows is not None:
                b = b[pair.rows[0] : pair.rows[1]]
            a, b = np.ascontiguousarray(a), np.ascontiguousarray(b) * np.float32(pair.scale)
            if len(self.cache) >= 8:
                self.cache.pop(next(iter(self.cache)))
            self.cache[key] = (a, b)
            return a, b

    def close(self):
        self.fh.close()


def _block_diagonal(x, blocks: int):
    """peft's BD-LoRA storage: `blocks` row-blocks of x placed on the diagonal."""
    import numpy as np

    rows, cols = x.shape
    step = rows // blocks
    out = np.zeros((rows, cols * blocks), dtype=x.dtype)
    for i in range(blocks):
        out[i * step : (i + 1) * step, i * cols : (i + 1) * cols] = x[i * step : (i + 1) * step]
    return out


# |x| from which rounding to the output dtype gives inf: float16's max plus half a step, and the
# same for bfloat16 (bits 0x7F7F8000); the tie goes to the even neighbour, which is inf.
_OVERFLOW = {"F16": 65520.0, "BF16": struct.unpack("<f", struct.pack("<I", 0x7F7F8000))[0]}


def _check(t: OutTensor, w) -> None:
    """Refuse a merged chunk with NaN/Inf, or one the output dtype cannot hold: two reductions
    over the float32 rows (min and max carry NaN), no per-element temporaries."""
    lo, hi = float(w.min()), float(w.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise MergeError(f"merged tensor {t.name} has NaN or Inf values", hint="Check the adapter weights (hubkit inspect).")
    limit = _OVERFLOW.get(t.dtype)
    if limit is not None and max(-lo, hi) >= limit:
        raise MergeError(f"merged tensor {t.name} overflows {TORCH_DTYPE_NAMES[t.dtype]}", hint="Merge with --dtype bfloat16." if t.dtype == "F16" else "Check the adapter weights (hubkit inspect).")


_SCRATCH = threading.local()


def _scratch(shape):
    """A float32 buffer of `shape`, reused by the calling worker: a fresh product per chunk would
    cost a page fault per page it touches."""
    import numpy as np

    n = math.prod(shape)
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.size < n:
        buf = _SCRATCH.buf = np.empty(n, dtype=np.float32)
    return buf[:n].reshape(shape)


def _merge_chunk(t: OutTensor, r0: int, r1: int, raw, factors: _Factors):
    """Output bytes of rows r0:r1 of tensor t."""
    import numpy as np

    if not t.changed and t.dtype == t.src_dtype:
        return raw
    w = _to_f32(raw, t.src_dtype).reshape((r1 - r0,) + tuple(t.shape[1:]))
    for pair in t.updates:
        a, b = factors.get(pair)  # a: (r, in), b: (out, r), scaled
        if pair.embedding or pair.fan_in_fan_out:
            lhs, rhs = a[:, r0:r1].T, b.T  # rows of (B @ A)^T: W is (in, out) or (num_embeddings, dim)
        else:
            lhs, rhs = b[r0:r1], a
        np.add(w, np.matmul(lhs, rhs, out=_scratch(w.shape)), out=w)
    for name, scale in t.bias_adds:
        w += factors.vector(name)[r0:r1] * np.float32(scale)
    if t.token_rows is not None:
        name, indices = t.token_rows
        values = factors.vector(name)
        for i, row in enumerate(indices):
            if r0 <= row < r1:
                w[row - r0] = values[i]
    if t.changed:
        _check(t, w)
    return _from_f32(np.ascontiguousarray(w).reshape(-1), t.dtype)


# -- the output folder ------------------------------------------------------------------------------
#
# hubkit deletes only what it made: a temporary folder holding its marker file, and an output folder
# holding the lineage file of a finished merge, never one that is, contains or sits above an input.


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _check_out(out: Path, plan: MergePlan, force: bool) -> bool:
    """Refuse an output folder hubkit must not write or replace. Returns whether `out` is an
    earlier merge to replace. Rule: `out` may not be, nor contain, the base or the adapter folder
    (compared literally and with symlinks resolved); an existing `out` is replaced only with
    `force` and only if it is a folder of files holding hubkit_merge.json (a finished merge);
    an existing empty folder is simply used."""
    for what, folder in (("base model", plan.base_dir), ("adapter", plan.adapter_dir)):
        for a in {folder.absolute(), folder.resolve()}:
            for o in {out, out.resolve()}:
                if _is_within(a, o):
                    rel = "is" if a == o else "contains"
                    raise MergeError(f"{out}: {rel} the {what} folder {folder}; hubkit never writes over or deletes a merge input", hint="Choose an --out outside the base and adapter folders.")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise MergeError(f"{out}: exists and is not a folder", hint="Choose another --out.")
    if not out.exists():
        return False
    entries = list(out.iterdir())
    if not entries:
        return False
    if not (out / LINEAGE_FILE).is_file() or any(e.is_dir() and not e.is_symlink() for e in entries):
        raise MergeError(f"{out}: exists and is not a finished hubkit merge (no {LINEAGE_FILE}, or it holds folders); hubkit replaces only its own output", hint="Choose another --out, or move that folder away yourself.")
    if not force:
        raise MergeError(f"{out}: already exists (an earlier hubkit merge)", hint="Pass --force to replace it, or choose another --out.")
    return True


def _stale_partials(parent: Path, name: str) -> None:
    """Remove temporary folders of killed merges into the same --out (their process is gone and
    they hold hubkit's marker): `.NAME.partial-PID` and an old output being swapped out."""
    for p in list(parent.glob(f".{name}.partial-*")) + list(parent.glob(f".{name}.old-*")):
        marker = p / (_PARTIAL_MARKER if ".partial-" in p.name else LINEAGE_FILE)
        if p.is_symlink() or not marker.is_file():
            continue
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(p, ignore_errors=True)
        except PermissionError:
            pass


def _write_error(exc: OSError, out: Path, need: int) -> MergeError:
    """One line for a failed write: the folder, what the system said, what to do."""
    where = out.parent if not out.exists() else out
    while not where.exists() and where != where.parent:
        where = where.parent
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f", {shutil.disk_usage(where).free / 1e9:.2f} GB free"
        except OSError:
            free = ""
        return MergeError(f"{out}: no space left on the device (the merge writes {need / 1e9:.2f} GB{free}); nothing was left behind", hint="Free some space there, or choose another --out.")
    if exc.errno == errno.EROFS:
        return MergeError(f"{out}: cannot write the merge there: read-only file system", hint="Choose a writable --out.")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return MergeError(f"{out}: cannot write the merge there: permission denied", hint="Choose a folder you can write to as --out.")
    return MergeError(f"{out}: cannot write the merge there: {exc.strerror or exc}", hint="Choose another --out.")


def _create(path: Path):
    """A new output file (one place, so a test can hand the writer a full device)."""
    return open(path, "wb")  # noqa: SIM115


def run_merge(plan: MergePlan, out: str | Path, *, force: bool = False, progress: Callable[[int], None] | None = None) -> MergeResult:
    """Execute a plan into `out` (atomically: a hidden temporary folder renamed at the end).
    Returns the MergeResult; raises MergeError for a refused --out (see _check_out), a full,
    read-only or forbidden output device, or a broken tensor, leaving no partial output."""
    out = Path(out).expanduser().absolute()
    replace = _check_out(out, plan, force)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        _stale_partials(out.parent, out.name)
        free = shutil.disk_usage(out.parent).free
    except OSError as exc:
        raise _write_error(exc, out, plan.bytes_out) from None
    if free < plan.bytes_out:
        raise MergeError(f"{out}: not enough space: the merge writes {plan.bytes_out / 1e9:.2f} GB, {free / 1e9:.2f} GB free there", hint="Free some space there, or choose another --out.")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    t0 = time.perf_counter()
    progress = progress or (lambda n: None)
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    write_q: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
    out_hashes: dict[str, str] = {}
    base_hashes: dict[str, str] = {}
    write_errors: list[BaseException] = []
    reader = threading.Thread(target=_reader, args=(plan, read_q, stop, base_hashes), daemon=True, name="hubkit-merge-read")
    writer = threading.Thread(target=_writer, args=(plan, tmp, write_q, out_hashes, write_errors, progress), daemon=True, name="hubkit-merge-write")
    factors = _Factors(plan)
    workers = max(1, min(4, os.cpu_count() or 1))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="hubkit-merge-math")
    pending: deque = deque()
    made_tmp = False
    try:
        try:
            if tmp.exists() and (tmp / _PARTIAL_MARKER).is_file():
                shutil.rmtree(tmp)
            tmp.mkdir()
            made_tmp = True
            (tmp / _PARTIAL_MARKER).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise _write_error(exc, out, plan.bytes_out) from None
        reader.start()
        writer.start()
        with _single_threaded_kernels(sum(t.in_bytes for t in plan.tensors if t.changed or t.dtype != t.src_dtype)):
            while True:
                item = read_q.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                if write_errors:
                    raise write_errors[0]
                t, r0, r1, raw = item
                # chunks are merged by a pool of workers (one kernel thread each) and written in order
                pending.append((t, pool.submit(_merge_chunk, t, r0, r1, raw, factors), len(raw)))
                while len(pending) > 2 * workers:
                    t, fut, n = pending.popleft()
                    write_q.put((t, fut.result(), n))
            while pending:
                t, fut, n = pending.popleft()
                write_q.put((t, fut.result(), n))
        write_q.put(None)
        writer.join()
        if write_errors:
            raise write_errors[0]
        try:
            lineage = _finish(plan, tmp, out_hashes, base_hashes)
            (tmp / _PARTIAL_MARKER).unlink()
            if replace:
                if not _check_out(out, plan, force):  # it changed under us: leave it alone
                    raise MergeError(f"{out}: changed while merging; left as it is", hint="Run the merge again.")
                old = out.parent / f".{out.name}.old-{os.getpid()}"
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                if out.exists():
                    out.rmdir()  # the empty folder _check_out allowed (rmdir refuses if it filled up)
                tmp.rename(out)
        except OSError as exc:
            raise _write_error(exc, out, plan.bytes_out) from None
    except BaseException as exc:
        stop.set()
        _drain(read_q)
        if writer.is_alive():
            _drain(write_q)
            write_q.put(None)
            writer.join(timeout=10)
        if made_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(exc, out, plan.bytes_out) from None
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        factors.close()
    return MergeResult(out, plan, time.perf_counter() - t0, out_hashes, lineage)


@contextlib.contextmanager
def _single_threaded_kernels(work_bytes: int = 0):
    """One BLAS/OpenMP thread per worker: the pool already spreads chunks over the cores, and
    nested kernel threads only contend with it (and with the reader and writer)."""
    import numpy  # noqa: F401  (load its BLAS first, or there is nothing to limit)

    limited = []
    try:
        from threadpoolctl import threadpool_limits  # present with scikit-learn and friends

        limited.append(threadpool_limits(1))
    except ImportError:
        pass
    _Torch.begin(work_bytes)
    try:
        yield
    finally:
        for ctx in limited:
            ctx.restore_original_limits()
        _Torch.end()


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def _finish(plan: MergePlan, tmp: Path, hashes: dict[str, str], base_hashes: dict[str, str]) -> dict:
    """config (dtype updated), generation config, tokenizer files, shard index and lineage."""
    cfg = dict(plan.base_config)
    for key in ("torch_dtype", "dtype"):
        if key in cfg:
            cfg[key] = plan.dtype
    if "torch_dtype" not in cfg and "dtype" not in cfg:
        cfg["torch_dtype"] = plan.dtype
    if plan.untied:
        cfg["tie_word_embeddings"] = False
    if plan.vocab_rows is not None:
        cfg["vocab_size"] = plan.vocab_rows
    (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    if (plan.base_dir / "generation_config.json").is_file():
        shutil.copyfile(plan.base_dir / "generation_config.json", tmp / "generation_config.json")
    # The adapter's tokenizer wins when it ships one (it may have added tokens or a chat template).
    tok_src = plan.adapter_dir if any((plan.adapter_dir / f).is_file() for f in ("tokenizer.json", "tokenizer.model")) else plan.base_dir
    for name in TOKENIZER_FILES:
        if (tok_src / name).is_file():
            shutil.copyfile(tok_src / name, tmp / name)
    if len(plan.shard_names) > 1:
        index = {
            "metadata": {"total_size": plan.bytes_out},
            "weight_map": {t.name: plan.shard_names[t.shard] for t in plan.tensors},
        }
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    base_files = {shard: base_hashes.get(shard) or sha256_file(plan.base_dir / shard) for shard in checkpoint_shards(plan.base_dir)}
    lineage = {
        "format": 1,
        "method": "hubkit streaming LoRA merge: W + scale * (B @ A) in float32",
        "hubkit_version": __version__,
        "dtype": plan.dtype,
        "base": {"ref": plan.base_ref, "revision": plan.base_revision, "commit": plan.base_commit, "sha256": base_files},
        "adapter": {
            "ref": plan.adapter_ref,
            "commit": plan.adapter_commit,
            "sha256": {"adapter_model.safetensors": sha256_file(plan.adapter_file), "adapter_config.json": sha256_file(plan.adapter_dir / "adapter_config.json")},
            "r": plan.adapter_config.get("r"),
            "lora_alpha": plan.adapter_config.get("lora_alpha"),
            "use_rslora": bool(plan.adapter_config.get("use_rslora")),
            "peft_version": plan.adapter_config.get("peft_version"),
        },
        "merged_modules": len(plan.pairs),
        "replaced_tensors": plan.replaced,
        "tokenizer_from": "adapter" if tok_src == plan.adapter_dir else "base",
        "untied_embeddings": plan.untied,
        "decisions": plan.decisions,
        "files": dict(sorted(hashes.items())),
    }
    (tmp / LINEAGE_FILE).write_text(json.dumps(lineage, indent=2, sort_keys=True) + "\n")
    return lineage


def merge(adapter: str | Path, out: str | Path, *, base: str | Path | None = None, revision: str | None = None, dtype: str = "float16", shard_size: str | int = "5GB", force: bool = False, progress: Callable[[int], None] | None = None, endpoint: str | None = None) -> MergeResult:
    """Plan, check and run a streaming merge of `adapter` into `base` (default: the adapter's
    base_model_name_or_path), writing a self-contained checkpoint to `out`. Either may be a Hub
    repo id, fetched through huggingface_hub from `endpoint` (default HF_ENDPOINT) or its cache."""
    plan = plan_merge(adapter, base, revision=revision, dtype=dtype, shard_size=shard_size, endpoint=endpoint)
    return run_merge(plan, out, force=force, progress=progress)


def read_lineage(path: str | Path) -> dict | None:
    p = Path(path) / LINEAGE_FILE
    return json.loads(p.read_text()) if p.is_file() else None

