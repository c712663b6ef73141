"""Facts read from files, never typed by hand: LoRA settings, parameter counts, dtypes, hashes.

Only headers are read (a safetensors file's 8 bytes of length + JSON table, a GGUF file's metadata
and tensor table), so inspecting a 14 GB checkpoint costs milliseconds plus, if asked, the sha256
pass. `hubkit inspect --json` writes these facts for a card to read when the files are not at hand;
`load_facts_file` reads such a file back, or one an author wrote by hand, through a schema that
says which of the two it is.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from . import __version__
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

INSPECTED_BY = f"hubkit {__version__}"
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
    inspected_by: str = field(default_factory=lambda: INSPECTED_BY)

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
    quantization: dict[str, Any] | None = None  # config.json's quantization_config (GPTQ, AWQ, bitsandbytes...), scalars only
    inspected_by: str = field(default_factory=lambda: INSPECTED_BY)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GGUFModelFacts:
    """One model of a GGUF folder: a .gguf file, or the parts of a split one."""

    path: str  # the file (the first part of a split model), relative to the inspected folder
    parts: list[str]  # every file of the model in order; [path] when it is not split
    size: int  # bytes on disk, all parts
    architecture: str | None  # general.architecture, e.g. llama
    name: str | None  # general.name
    params: int  # elements of every tensor, as llama.cpp counts them
    file_type: str | None  # llama.cpp's general.file_type, e.g. MOSTLY_Q4_K_M
    quant_type: str | None  # its short label, e.g. Q4_K_M
    tensor_types: dict[str, int]  # ggml type -> number of tensors stored in it
    tensor_bytes: int  # bytes of tensor data (the file also holds metadata and the vocabulary)
    bits_per_weight: float | None  # 8 * tensor_bytes / params
    context_length: int | None  # {arch}.context_length: the context the model was trained for
    gguf_version: int
    has_tokenizer: bool  # tokenizer.ggml.model is set: the file carries its own tokenizer
    has_chat_template: bool  # tokenizer.chat_template is set


@dataclass
class GGUFFacts:
    kind: str  # "gguf"
    path: str
    architecture: str | None  # shared by every language-model file (vision projectors aside)
    params: int | None  # shared by every language-model file
    context_length: int | None
    models: list[GGUFModelFacts]
    files: list[FileFact] = field(default_factory=list)
    inspected_by: str = field(default_factory=lambda: INSPECTED_BY)

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
        quantization=_quantization(cfg),
    )


def _quantization(cfg: dict) -> dict[str, Any] | None:
    q = cfg.get("quantization_config")
    if not isinstance(q, dict) or not q.get("quant_method"):
        return None
    return {k: v for k, v in q.items() if isinstance(v, (str, int, float, bool)) and v is not None}


def _gguf_names(root: Path) -> list[str]:
    """GGUF files in a folder and its direct subfolders (repos put split models in one)."""
    found = sorted(root.glob("*.gguf")) + sorted(root.glob("*/*.gguf"))
    return [p.relative_to(root).as_posix() for p in found if p.is_file()]


def _gguf_model(root: Path, parts: list[str]) -> GGUFModelFacts:
    from .gguf import file_type_name, quant_label, read_gguf_header

    headers = [read_gguf_header(root / p) for p in parts]
    first = headers[0]
    if len(parts) > 1:
        count = first.get("split.count")
        if isinstance(count, int) and count != len(parts):
            raise InspectError(f"{root / parts[0]}: split.count says {count} parts, the names give {len(parts)}", path=root / parts[0])
        expected = first.get("split.tensors.count")
        total = sum(len(h.tensors) for h in headers)
        if isinstance(expected, int) and expected != total:
            raise InspectError(
                f"{root / parts[0]}: split.tensors.count says {expected} tensors, the {len(parts)} parts hold {total}",
                path=root / parts[0],
                hint="A part is corrupt or comes from another split; fetch the parts again.",
            )
        for i, h in enumerate(headers):
            no = h.get("split.no")
            if isinstance(no, int) and no != i:
                raise InspectError(f"{root / parts[i]}: split.no says part {no + 1}, the name says part {i + 1}", path=root / parts[i])
    tensors = [t for h in headers for t in h.tensors]
    params = sum(t.n_elements for t in tensors)
    tensor_bytes = sum(t.n_bytes for t in tensors)
    types: dict[str, int] = {}
    for t in tensors:
        types[t.type_name] = types.get(t.type_name, 0) + 1
    file_type = file_type_name(first.get("general.file_type"))
    context = first.arch_value("context_length")
    name = first.get("general.name")
    return GGUFModelFacts(
        path=parts[0],
        parts=list(parts),
        size=sum(h.size for h in headers),
        architecture=first.architecture,
        name=name if isinstance(name, str) else None,
        params=params,
        file_type=file_type,
        quant_type=quant_label(file_type),
        tensor_types=dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0]))),
        tensor_bytes=tensor_bytes,
        bits_per_weight=round(8 * tensor_bytes / params, 4) if params else None,
        context_length=context if isinstance(context, int) else None,
        gguf_version=first.version,
        has_tokenizer="tokenizer.ggml.model" in first.metadata,
        has_chat_template="tokenizer.chat_template" in first.metadata,
    )


def _shared(values: list) -> Any:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def inspect_gguf(path: str | Path, *, hash_files: bool = True) -> GGUFFacts:
    """Read a folder of GGUF files (or one .gguf file, with the other parts of its split model).

    Raises InspectError naming the file when a header is corrupt or cut short, a part of a split
    model is missing, or the folder holds no GGUF file.
    """
    from .gguf import PROJECTOR_ARCHITECTURES, SPLIT_NAME, split_parts

    target = Path(path)
    if target.is_file():
        root = target.parent
        m = SPLIT_NAME.match(target.name)
        if m:  # one part of a split model stands for the whole model
            names = [p.name for p in sorted(root.glob(f"{_glob_escape(m['prefix'])}-*-of-{m['count']}.gguf")) if SPLIT_NAME.match(p.name)]
        else:
            names = [target.name]
    else:
        root = target
        names = _gguf_names(root)
        if not names:
            raise InspectError(f"{root}: no .gguf files", path=root)
    grouped, problems = split_parts(names)
    if problems:
        raise InspectError(f"{root}: {problems[0]}", path=root, hint="Fetch the missing parts: llama.cpp needs every part of a split model.")
    models = [_gguf_model(root, parts) for parts in grouped.values()]
    language = [m for m in models if m.architecture not in PROJECTOR_ARCHITECTURES] or models
    on_disk = [p for parts in grouped.values() for p in parts]
    if target.is_dir():
        on_disk += [p.name for p in root.iterdir() if p.is_file() and not p.name.endswith(".gguf")]
    return GGUFFacts(
        kind="gguf",
        path=str(target),
        architecture=_shared([m.architecture for m in language]),
        params=_shared([m.params for m in language]),
        context_length=_shared([m.context_length for m in language]),
        models=models,
        files=_file_facts(root, on_disk, hash_files),
    )


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def inspect_path(path: str | Path, *, hash_files: bool = True) -> AdapterFacts | CheckpointFacts | GGUFFacts:
    """Inspect an adapter folder, a checkpoint folder, a folder of GGUF files or one .gguf file.

    Raises InspectError when the path does not exist or is none of these.
    """
    root = Path(path)
    if not root.exists():
        raise InspectError(f"{root}: no such file or directory", path=root)
    if root.is_file():
        if root.suffix == ".gguf":
            return inspect_gguf(root, hash_files=hash_files)
        raise InspectError(
            f"{root}: is a file; pass the directory that holds it",
            path=root,
            hint="hubkit inspects adapter directories (adapter_config.json), checkpoint directories (config.json), folders of .gguf files, and .gguf files.",
        )
    if (root / "adapter_config.json").exists():
        return inspect_adapter(root, hash_files=hash_files)
    has_weights = (root / "model.safetensors").exists() or (root / "model.safetensors.index.json").exists()
    if (root / "config.json").exists() and (has_weights or not _gguf_names(root)):
        return inspect_checkpoint(root, hash_files=hash_files)
    if _gguf_names(root):
        return inspect_gguf(root, hash_files=hash_files)
    raise InspectError(
        f"{root}: neither a PEFT adapter (no adapter_config.json) nor a checkpoint (no config.json) nor GGUF files (no .gguf)",
        path=root,
    )


def weights_digest(facts: AdapterFacts | CheckpointFacts | GGUFFacts) -> str:
    """One sha256 over the weight files' hashes: a stable identity for cache keys and records."""
    h = hashlib.sha256()
    for f in facts.files:
        if f.path.endswith((".safetensors", ".gguf")):
            if f.sha256 is None:
                raise ValueError("weights_digest needs facts inspected with hash_files=True")
            h.update(f"{f.path}:{f.sha256}\n".encode())
    return h.hexdigest()


# -- facts files: `hubkit inspect --json` output, or facts an author wrote by hand --------------

_PARAMS_TEXT = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMbBtT])\s*$")
_PARAMS_SCIENTIFIC = re.compile(r"^\s*\d+(?:\.\d+)?[eE]\+?\d+\s*$")
_UNITS = {"k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_params(value: Any) -> tuple[int, bool]:
    """A parameter count as an author may write it: 6738415616 or "6,738,415,616" (exact), or
    "7B" / "6.74B" / "125M" / 6.7e9 / "6.7e9" (approximate: nobody types an exact count in
    scientific notation, and a float cannot hold one above 2**53 anyway).
    Returns (count, approximate); raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"expected a parameter count like 6738415616 or \"6.74B\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a positive parameter count, got {value}")
        return value, False
    if isinstance(value, float) and value.is_integer() and value >= 1:
        return int(value), True
    if isinstance(value, str):
        digits = value.strip().replace(",", "").replace("_", "")
        if digits.isdigit():
            return int(digits), False
        m = _PARAMS_TEXT.match(value)
        if m:
            return round(float(m["num"]) * _UNITS[m["unit"].lower()]), True
        if _PARAMS_SCIENTIFIC.match(value) and float(value) >= 1:
            return round(float(value)), True
    shown = json.dumps(value) if isinstance(value, str) else repr(value)
    raise ValueError(f"expected a parameter count like 6738415616 or \"6.74B\", got {shown}")


def _check_params(value: Any) -> Any:
    if value is not None:
        parse_params(value)
    return value


# An int, or a string like "7B": checked by parse_params, kept as written until normalized.
ParamCount = Annotated[Any, BeforeValidator(_check_params)]
# What `hubkit inspect --json` always writes: a file that says it is its output must have them.
_FROM_INSPECT = {
    "AdapterFactsSchema": ("peft_type", "scaling", "module_types", "adapted_modules", "trainable_params", "dtypes"),
    "CheckpointFactsSchema": ("architectures", "params", "dtypes", "shards"),
    "GGUFFactsSchema": ("architecture", "params", "context_length", "models", "files"),
}


class _Facts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="after")
    def inspect_output_is_whole(self) -> "_Facts":
        if getattr(self, "inspected_by", None):
            missing = [f for f in _FROM_INSPECT.get(type(self).__name__, ()) if f not in self.model_fields_set]
            if missing:
                raise ValueError(
                    f"says it was written by {self.inspected_by} (inspected_by) but lacks {', '.join(missing)}: "
                    "rerun `hubkit inspect --json`, or remove inspected_by if you wrote the file by hand"
                )
        return self


class FileFactSchema(_Facts):
    path: str = Field(description="File name, relative to the artifact's folder.")
    size: int | None = Field(None, ge=0, description="Bytes on disk.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$", description="Hex sha256 of the file.")


class AdapterFactsSchema(_Facts):
    kind: Literal["adapter"]
    path: str | None = None
    peft_type: Literal["LORA"] = "LORA"
    base_model: str | None = None
    base_model_revision: str | None = None
    task_type: str | None = None
    r: int = Field(ge=1)
    lora_alpha: float
    lora_dropout: float = Field(0.0, ge=0, le=1)
    use_rslora: bool = False
    use_dora: bool = False
    scaling: float | None = None
    target_modules: list[str] = Field(default_factory=list)
    module_types: list[str] = Field(default_factory=list)
    adapted_modules: int | None = Field(None, ge=0)
    trainable_params: int | None = Field(None, ge=0)
    dtypes: list[str] = Field(default_factory=list)
    rank_pattern: dict[str, int] = Field(default_factory=dict)
    alpha_pattern: dict[str, float] = Field(default_factory=dict)
    modules_to_save: list[str] = Field(default_factory=list)
    peft_version: str | None = None
    files: list[FileFactSchema] = Field(default_factory=list)
    tokenizer_files: list[str] = Field(default_factory=list)
    base_params: ParamCount | None = Field(None, description="Parameters of the base model, for the trainable share.")
    variants: list[str] = Field(default_factory=list, description="LoRA variants the config switches on (empty for plain LoRA).")
    inspected_by: str | None = None



class CheckpointFactsSchema(_Facts):
    kind: Literal["checkpoint"]
    path: str | None = None
    architectures: list[str] = Field(default_factory=list)
    model_type: str | None = None
    params: ParamCount | None = None
    dtypes: list[str] = Field(default_factory=list)
    config_dtype: str | None = None
    shards: list[str] = Field(default_factory=list)
    tie_word_embeddings: bool | None = None
    vocab_size: int | None = Field(None, ge=1)
    hidden_size: int | None = Field(None, ge=1)
    num_layers: int | None = Field(None, ge=1)
    files: list[FileFactSchema] = Field(default_factory=list)
    tokenizer_files: list[str] = Field(default_factory=list)
    merge_record: dict[str, Any] | None = None
    quantization: dict[str, str | int | float | bool] | None = None
    base_params: ParamCount | None = None
    inspected_by: str | None = None



class GGUFModelSchema(_Facts):
    path: str = Field(description="The .gguf file (the first part of a split model).")
    parts: list[str] = Field(default_factory=list, description="Every part of a split model, in order.")
    size: int | None = Field(None, ge=0)
    architecture: str | None = None
    name: str | None = None
    params: ParamCount | None = None
    file_type: str | None = None
    quant_type: str | None = Field(None, description="e.g. Q4_K_M, Q8_0, F16.")
    tensor_types: dict[str, int] = Field(default_factory=dict)
    tensor_bytes: int | None = Field(None, ge=0)
    bits_per_weight: float | None = Field(None, gt=0, le=64)
    context_length: int | None = Field(None, ge=1)
    gguf_version: int | None = None
    has_tokenizer: bool | None = None
    has_chat_template: bool | None = None



class GGUFFactsSchema(_Facts):
    kind: Literal["gguf"]
    path: str | None = None
    architecture: str | None = None
    params: ParamCount | None = None
    context_length: int | None = Field(None, ge=1)
    models: list[GGUFModelSchema] = Field(min_length=1)
    files: list[FileFactSchema] = Field(default_factory=list)
    base_params: ParamCount | None = None
    inspected_by: str | None = None


    @model_validator(mode="after")
    def inspected_models_are_whole(self) -> "GGUFFactsSchema":
        if self.inspected_by:
            needed = ("parts", "size", "params", "tensor_types", "tensor_bytes", "gguf_version")
            for i, m in enumerate(self.models):
                missing = [f for f in needed if f not in m.model_fields_set]
                if missing:
                    raise ValueError(f"models.{i}: lacks {', '.join(missing)}, which `hubkit inspect --json` writes (remove inspected_by if you wrote the file by hand)")
        return self


FACTS_SCHEMAS: dict[str, type[_Facts]] = {"adapter": AdapterFactsSchema, "checkpoint": CheckpointFactsSchema, "gguf": GGUFFactsSchema}


_TYPE_WORDS = {
    "int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer", "float_parsing": "a number",
    "float_type": "a number", "bool_parsing": "true or false", "bool_type": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
}


def _schema_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The schema that owns the last key of `loc` (for "did you mean" on a nested field)."""
    model: Any = schema
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field_info = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field_info is None:
            return None
        inner = [a for a in getattr(field_info.annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else field_info.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else repr(value)


def _schema_error(source: str, err: dict, schema: type[BaseModel]) -> str:
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    kind = err["type"]
    if kind == "extra_forbidden":
        owner = _schema_at(schema, tuple(err["loc"]))
        close = difflib.get_close_matches(str(err["loc"][-1]), list(owner.model_fields) if owner else [], n=1, cutoff=0.6)
        return f"{source}: {loc}: unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")
    if kind == "missing":
        return f"{source}: {loc}: required field is missing"
    if kind in _TYPE_WORDS:
        return f"{source}: {loc}: expected {_TYPE_WORDS[kind]}, got {_shown(err.get('input'))}"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "too_short":
        return f"{source}: {loc}: needs at least one entry"
    if kind == "literal_error" or kind.startswith(("greater_than", "less_than", "string_pattern")):
        return f"{source}: {loc}: {msg[:1].lower() + msg[1:]}, got {_shown(err.get('input'))}"
    return f"{source}: {loc}: {msg[:1].lower() + msg[1:]}"


def validate_facts(data: Any, source: str) -> dict[str, Any]:
    """Check a facts mapping against its kind's schema and normalize it: every field present,
    parameter counts as integers (with `<field>_approximate` for "7B"-style values), and
    `provenance` saying whether hubkit read the facts (`inspect`) or an author stated them
    (`author`). Keys starting with "_" are comments and are dropped.

    Raises InspectError with one line per problem, each naming `source` and the field.
    """
    if not isinstance(data, dict):
        raise InspectError(f"{source}: expected a JSON object of facts", path=source)
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}
    kind = data.get("kind")
    schema = FACTS_SCHEMAS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise InspectError(
            f"{source}: kind: expected one of {', '.join(repr(k) for k in FACTS_SCHEMAS)}, got {json.dumps(kind) if kind is not None else 'nothing'}",
            path=source,
            hint="Write the file with `hubkit inspect --json PATH > facts.json`, or start from its output.",
        )
    try:
        model = schema.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            if err["type"] == "value_error" and err["loc"] == ():
                problems.append(f"{source}: {err['msg'].removeprefix('Value error, ')}")
            else:
                problems.append(_schema_error(source, err, schema))
        raise InspectError("\n".join(dict.fromkeys(problems)), path=source, hint="Fix the fields named above; `hubkit inspect --json` writes a complete file.") from None
    facts = model.model_dump()
    _normalize_params(facts, ("params", "base_params"))
    for m in facts.get("models") or []:
        _normalize_params(m, ("params",))
        m["parts"] = m["parts"] or [m["path"]]
    if kind == "adapter" and facts["scaling"] is None:
        facts["scaling"] = facts["lora_alpha"] / (facts["r"] ** 0.5 if facts["use_rslora"] else facts["r"])
    facts["provenance"] = {"source": "inspect" if model.inspected_by else "author", "file": source, "by": model.inspected_by}
    return facts


def _normalize_params(facts: dict, keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in facts:
            if facts[key] is None:
                facts[f"{key}_approximate"] = False
                continue
            facts[key], facts[f"{key}_approximate"] = parse_params(facts[key])


def load_facts_file(path: str | Path, shown_as: str | None = None) -> dict[str, Any]:
    """Read a facts JSON file (`hubkit inspect --json` output or written by hand) and validate it
    (see validate_facts). Errors name `shown_as` (default: the path).

    Raises InspectError when the file is missing, is not JSON, or breaks the schema.
    """
    path = Path(path)
    source = shown_as or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InspectError(f"{source}: facts file not found", path=path, hint="Write it with `hubkit inspect --json PATH > FILE`, or fix the artifact's `facts:` path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InspectError(f"{source}: cannot read: {getattr(exc, 'strerror', None) or exc}", path=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InspectError(f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}", path=path) from None
    return validate_facts(data, source)
