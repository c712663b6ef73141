"""Facts read from files, never typed by hand: LoRA settings, parameter counts, dtypes, hashes.

Only safetensors *headers* are read (8 bytes of length + a JSON table), so inspecting a 14 GB
checkpoint costs milliseconds plus, if asked, the sha256 pass.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import InspectError

# Bytes per element of each safetensors dtype.
DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8,
}
TORCH_DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}

# Files that make up a checkpoint or adapter besides its weights.
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
)

_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>A|B)(?:\.(?P<adapter>[^.]+))?\.weight$")
_MAX_HEADER = 100 * 1024 * 1024  # the safetensors spec caps the header at 100 MB


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, int]

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class SafetensorsHeader:
    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int  # byte offset where tensor data begins

    @property
    def numel(self) -> int:
        return sum(t.numel for t in self.tensors.values())


def read_safetensors_header(path: str | Path) -> SafetensorsHeader:
    """Parse a safetensors file's header without touching tensor data.

    Raises InspectError when the file is too short, the header is not JSON, or the tensors it
    declares run past the end of the file (a truncated download or an interrupted write).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise InspectError(f"{path}: not a safetensors file (only {size} bytes)", path=path)
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER or 8 + n > size:
                raise InspectError(
                    f"{path}: corrupt or truncated safetensors file (header claims {n} bytes, file has {size})",
                    path=path,
                    hint="Re-download or re-save the file.",
                )
            raw = fh.read(n)
    except OSError as exc:
        raise InspectError(f"{path}: cannot read: {exc.strerror}", path=path) from None
    try:
        table = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InspectError(f"{path}: corrupt safetensors header (not JSON)", path=path) from None
    metadata = table.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    end = 0
    for name, info in table.items():
        try:
            t = TensorInfo(name, info["dtype"], tuple(info["shape"]), tuple(info["data_offsets"]))
        except (KeyError, TypeError):
            raise InspectError(f"{path}: corrupt safetensors header entry {name!r}", path=path) from None
        expected = t.numel * DTYPE_BYTES.get(t.dtype, 0)
        if DTYPE_BYTES.get(t.dtype) and t.offsets[1] - t.offsets[0] != expected:
            raise InspectError(f"{path}: tensor {name!r} has {t.offsets[1] - t.offsets[0]} bytes, shape needs {expected}", path=path)
        end = max(end, t.offsets[1])
        tensors[name] = t
    if 8 + n + end > size:
        raise InspectError(
            f"{path}: truncated: tensors need {8 + n + end} bytes, file has {size}",
            path=path,
            hint="The file was cut short (interrupted download or write); fetch or write it again.",
        )
    return SafetensorsHeader(path=path, tensors=tensors, metadata=metadata, data_start=8 + n)


def sha256_file(path: str | Path, chunk: int = 8 * 1024 * 1024) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class FileFact:
    path: str  # relative to the inspected directory
    size: int
    sha256: str | None = None


@dataclass
class AdapterFacts:
    kind: str  # "adapter"
    path: str
    peft_type: str
    base_model: str | None
    base_model_revision: str | None
    task_type: str | None
    r: int
    lora_alpha: float
    lora_dropout: float
    use_rslora: bool
    use_dora: bool
    scaling: float
    target_modules: list[str]  # as configured (may be a regex string in a one-element list)
    module_types: list[str]  # projection names actually adapted, e.g. q_proj
    adapted_modules: int
    trainable_params: int
    dtypes: list[str]
    rank_pattern: dict[str, int]
    alpha_pattern: dict[str, float]
    modules_to_save: list[str]
    peft_version: str | None
    files: list[FileFact] = field(default_factory=list)
    tokenizer_files: list[str] = field(default_factory=list)
    variants: list[str] = field(default_factory=list)  # LoRA variants switched on, see lora_variants

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# adapter_config.json fields that switch on a LoRA variant (a different forward pass or merge).
_VARIANT_FIELDS = {
    "use_dora": "dora", "alora_invocation_tokens": "alora", "arrow_config": "arrow", "use_qalora": "qalora",
    "kasa_config": "kasa", "velora_config": "velora", "monteclora_config": "monteclora", "use_bdlora": "bdlora",
    "lora_bias": "lora_bias", "trainable_token_indices": "trainable_tokens", "target_parameters": "target_parameters",
    "layer_replication": "layer_replication",
}


def lora_variants(cfg: dict) -> list[str]:
    """Names of the LoRA variants an adapter_config.json switches on (empty for plain LoRA), and
    `init:NAME` for an init_lora_weights that is not plain (pissa, olora, mica, ...)."""
    found = [name for key, name in _VARIANT_FIELDS.items() if cfg.get(key)]
    init = cfg.get("init_lora_weights")
    if isinstance(init, str) and init.lower() not in ("gaussian",):
        found.append(f"init:{init}")
    return found


@dataclass
class CheckpointFacts:
    kind: str  # "checkpoint"
    path: str
    architectures: list[str]
    model_type: str | None
    params: int
    dtypes: list[str]
    config_dtype: str | None
    shards: list[str]
    tie_word_embeddings: bool | None
    vocab_size: int | None
    hidden_size: int | None
    num_layers: int | None
    files: list[FileFact] = field(default_factory=list)
    tokenizer_files: list[str] = field(default_factory=list)
    merge_record: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InspectError(f"{path}: missing ({what})", path=path) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InspectError(f"{path}: not valid JSON ({what}): {exc}", path=path) from None
    if not isinstance(data, dict):
        raise InspectError(f"{path}: expected a JSON object ({what})", path=path)
    return data


def _file_facts(root: Path, names: list[str], hash_files: bool) -> list[FileFact]:
    facts = []
    for name in sorted(names):
        p = root / name
        facts.append(FileFact(name, p.stat().st_size, sha256_file(p) if hash_files else None))
    return facts


def inspect_adapter(path: str | Path, *, hash_files: bool = True) -> AdapterFacts:
    """Read a PEFT adapter directory: adapter_config.json plus the weights' safetensors header.

    Raises InspectError naming the file when the config is missing or corrupt, the weights are
    missing, pickled only, or truncated.
    """
    root = Path(path)
    cfg_path = root / "adapter_config.json"
    cfg = _read_json(cfg_path, "PEFT adapter config")
    peft_type = cfg.get("peft_type")
    if peft_type is None:
        raise InspectError(f"{cfg_path}: field 'peft_type' is missing: not a PEFT adapter config", path=cfg_path)
    if peft_type != "LORA":
        raise InspectError(
            f"{cfg_path}: peft_type {peft_type!r} is not supported (hubkit handles LoRA adapters)", path=cfg_path
        )
    for key in ("r", "lora_alpha"):
        if not isinstance(cfg.get(key), (int, float)):
            raise InspectError(f"{cfg_path}: field {key!r}: expected a number, got {cfg.get(key)!r}", path=cfg_path)
    if cfg["r"] <= 0 or cfg["r"] != int(cfg["r"]):
        # the scale is lora_alpha / r: a rank of 0 has none (and peft cannot build such a layer)
        raise InspectError(f"{cfg_path}: field 'r' is {cfg['r']!r}: a LoRA rank must be a positive integer", path=cfg_path, hint="Is this adapter_config.json intact? Re-save the adapter with peft.")

    weights = root / "adapter_model.safetensors"
    if not weights.is_file():
        if (root / "adapter_model.bin").is_file():
            raise InspectError(
                f"{root / 'adapter_model.bin'}: pickled weights only; hubkit reads safetensors",
                path=root,
                hint="Re-save with `model.save_pretrained(dir, safe_serialization=True)`.",
            )
        raise InspectError(f"{weights}: missing (adapter weights)", path=weights)
    header = read_safetensors_header(weights)

    modules: dict[str, dict[str, TensorInfo]] = {}
    other_params = 0
    for name, t in header.tensors.items():
        m = _LORA_KEY.match(name)
        if m:
            modules.setdefault(m["module"], {})[m["ab"]] = t
        else:
            other_params += t.numel  # modules_to_save, embeddings trained alongside
    incomplete = sorted(mod for mod, ab in modules.items() if set(ab) != {"A", "B"})
    if incomplete:
        raise InspectError(f"{weights}: module {incomplete[0]!r} has only one of lora_A / lora_B", path=weights)
    module_types = sorted({mod.rsplit(".", 1)[-1] for mod in modules})

    r = int(cfg["r"])
    alpha = float(cfg["lora_alpha"])
    rslora = bool(cfg.get("use_rslora", False))
    target = cfg.get("target_modules")
    if isinstance(target, str):
        target = [target]
    files = [p.name for p in root.iterdir() if p.is_file()]
    return AdapterFacts(
        kind="adapter",
        path=str(root),
        peft_type=peft_type,
        base_model=cfg.get("base_model_name_or_path"),
        base_model_revision=cfg.get("revision"),
        task_type=cfg.get("task_type"),
        r=r,
        lora_alpha=alpha,
        lora_dropout=float(cfg.get("lora_dropout") or 0.0),
        use_rslora=rslora,
        use_dora=bool(cfg.get("use_dora", False)),
        scaling=alpha / (r**0.5) if rslora else alpha / r,
        target_modules=sorted(target or []),
        module_types=module_types,
        adapted_modules=len(modules),
        trainable_params=header.numel,
        dtypes=sorted({t.dtype for t in header.tensors.values()}),
        rank_pattern=dict(cfg.get("rank_pattern") or {}),
        alpha_pattern=dict(cfg.get("alpha_pattern") or {}),
        modules_to_save=list(cfg.get("modules_to_save") or []),
        peft_version=(cfg.get("peft_version") or None),
        files=_file_facts(root, files, hash_files),
        tokenizer_files=sorted(f for f in files if f in TOKENIZER_FILES),
        variants=lora_variants(cfg),
    )


def checkpoint_shards(root: Path) -> list[str]:
    """Safetensors shard names of a checkpoint, in index order. Raises InspectError if none."""
    index = root / "model.safetensors.index.json"
    if index.is_file():
        data = _read_json(index, "safetensors shard index")
        weight_map = data.get("weight_map")
        if not isinstance(weight_map, dict):
            raise InspectError(f"{index}: field 'weight_map' is missing or not a mapping", path=index)
        shards = sorted(set(weight_map.values()))
        for s in shards:
            if not (root / s).is_file():
                raise InspectError(f"{root / s}: missing (listed in {index.name})", path=root / s)
        return shards
    if (root / "model.safetensors").is_file():
        return ["model.safetensors"]
    if any(root.glob("*.bin")):
        raise InspectError(
            f"{root}: pickled (.bin) weights only; hubkit reads safetensors",
            path=root,
            hint="Re-save with `model.save_pretrained(dir, safe_serialization=True)`.",
        )
    raise InspectError(f"{root}: no model.safetensors or model.safetensors.index.json", path=root)


def inspect_checkpoint(path: str | Path, *, hash_files: bool = True) -> CheckpointFacts:
    """Read a transformers checkpoint directory: config.json plus every shard's header."""
    root = Path(path)
    cfg_path = root / "config.json"
    cfg = _read_json(cfg_path, "model config")
    shards = checkpoint_shards(root)
    headers = [read_safetensors_header(root / s) for s in shards]
    text_cfg = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    merge_record = None
    if (root / "hubkit_merge.json").is_file():
        merge_record = _read_json(root / "hubkit_merge.json", "hubkit merge record")
    files = [p.name for p in root.iterdir() if p.is_file()]
    return CheckpointFacts(
        kind="checkpoint",
        path=str(root),
        architectures=list(cfg.get("architectures") or []),
        model_type=cfg.get("model_type"),
        params=sum(h.numel for h in headers),
        dtypes=sorted({t.dtype for h in headers for t in h.tensors.values()}),
        config_dtype=cfg.get("dtype") or cfg.get("torch_dtype"),
        shards=shards,
        tie_word_embeddings=cfg.get("tie_word_embeddings"),
        vocab_size=text_cfg.get("vocab_size"),
        hidden_size=text_cfg.get("hidden_size"),
        num_layers=text_cfg.get("num_hidden_layers"),
        files=_file_facts(root, files, hash_files),
        tokenizer_files=sorted(f for f in files if f in TOKENIZER_FILES),
        merge_record=merge_record,
    )


def inspect_path(path: str | Path, *, hash_files: bool = True) -> AdapterFacts | CheckpointFacts:
    """Inspect an adapter or a checkpoint directory, whichever it is.

    Raises InspectError when the path does not exist or is neither.
    """
    root = Path(path)
    if not root.exists():
        raise InspectError(f"{root}: no such file or directory", path=root)
    if root.is_file():
        raise InspectError(
            f"{root}: is a file; pass the directory that holds it",
            path=root,
            hint="hubkit inspects adapter directories (adapter_config.json) and checkpoint directories (config.json).",
        )
    if (root / "adapter_config.json").exists():
        return inspect_adapter(root, hash_files=hash_files)
    if (root / "config.json").exists():
        return inspect_checkpoint(root, hash_files=hash_files)
    raise InspectError(
        f"{root}: neither a PEFT adapter (no adapter_config.json) nor a checkpoint (no config.json)",
        path=root,
    )


def weights_digest(facts: AdapterFacts | CheckpointFacts) -> str:
    """One sha256 over the weight files' hashes: a stable identity for cache keys and records."""
    h = hashlib.sha256()
    for f in facts.files:
        if f.path.endswith(".safetensors"):
            if f.sha256 is None:
                raise ValueError("weights_digest needs facts inspected with hash_files=True")
            h.update(f"{f.path}:{f.sha256}\n".encode())
    return h.hexdigest()
