"""GGUF files (llama.cpp's format): the header, read without touching tensor data, and what it says.

The `gguf` package (llama.cpp's own) names the tensor types, file types and block sizes. Its
`GGUFReader` parses every metadata array element by element: a Llama-3-sized vocabulary (128k
tokens plus 280k merges) took 20 s per file on the 2-core build machine, so a folder of a dozen
quantizations would take minutes. This reader walks the same bytes but skips array contents, and
`tests/test_gguf.py` checks that both readers agree on every file the tests write.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InspectError

MAGIC = b"GGUF"
# llama.cpp's gguf-split (and gguf-py's writer) name the parts of a split model like this.
SPLIT_NAME = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")
_MAX_COUNT = 1 << 24  # tensors or metadata keys: real files have a few thousand at most
_KEEP_ARRAY = 64  # numeric arrays up to this length are kept (per-layer head counts); longer ones are skipped

# Value types of the GGUF spec: struct format of each scalar.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

# Architectures (general.architecture as llama.cpp writes it) that transformers' GGUF loader turns
# into an AutoModelForCausalLM: GGUF_SUPPORTED_ARCHITECTURES of transformers 5, with llama.cpp's
# spellings of the names it renames (qwen2moe -> qwen2_moe). Encoder-decoder ones (t5, umt5) are
# left out: they are not causal LMs; so is deci (no causal-LM class of that name). tests/test_gguf.py
# checks each against the installed transformers.
TRANSFORMERS_GGUF_ARCHITECTURES = frozenset({
    "bloom", "falcon", "gemma2", "gemma3", "gpt-oss", "gpt2", "lfm2", "llama", "mamba", "minimax-m2",
    "mistral", "nemotron", "phi3", "qwen2", "qwen2moe", "qwen3", "qwen3moe", "stablelm", "starcoder2",
})
# Tensor types the `gguf` package can dequantize with numpy, which transformers' GGUF loader relies
# on; the same test checks them against the installed gguf.
TRANSFORMERS_GGUF_TENSOR_TYPES = frozenset({
    "F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0",
})
# Vision projectors (llava's mmproj files) sit next to the language model in GGUF repos; they are
# not models a chat command can run on their own.
PROJECTOR_ARCHITECTURES = frozenset({"clip", "mmproj"})


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    shape: tuple[int, ...]  # ggml order: the fastest-varying dimension first
    type_name: str  # ggml type, e.g. Q4_K, F32
    offset: int  # from the start of the data section
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class ArrayInfo:
    """A metadata array too long to keep (a vocabulary): its element type and length only."""

    element_type: int
    length: int


@dataclass
class GGUFHeader:
    path: Path
    version: int
    size: int  # bytes on disk
    metadata: dict[str, Any]
    tensors: list[GGUFTensor] = field(default_factory=list)
    data_start: int = 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    def arch_value(self, key: str) -> Any:
        """`{arch}.key`, e.g. arch_value("context_length") -> llama.context_length."""
        return self.metadata.get(f"{self.architecture}.{key}") if self.architecture else None


class _Cursor:
    def __init__(self, buf, path: Path, endian: str):
        self.buf, self.path, self.endian, self.pos = buf, path, endian, 0
        self.size = len(buf)

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InspectError(
                f"{self.path}: truncated or corrupt GGUF header (reading {what} at byte {self.pos}, file has {self.size})",
                path=self.path,
                hint="Re-download or re-convert the file.",
            )

    def scalar(self, fmt: str, what: str) -> Any:
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(self.endian + fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self, what: str, keep: bool = True) -> str | None:
        n = self.scalar("Q", what)
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n] if keep else None
        self.pos += n
        if raw is None:
            return None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InspectError(f"{self.path}: corrupt GGUF header ({what} is not UTF-8)", path=self.path) from None

    def value(self, vtype: int, what: str) -> Any:
        if vtype in _SCALAR:
            return self.scalar(_SCALAR[vtype], what)
        if vtype == _STRING:
            return self.string(what)
        if vtype == _ARRAY:
            etype = self.scalar("I", what)
            length = self.scalar("Q", what)
            if etype in _SCALAR:
                width = struct.calcsize(_SCALAR[etype])
                self.need(length * width, what)
                if length <= _KEEP_ARRAY:
                    values = list(struct.unpack_from(f"{self.endian}{length}{_SCALAR[etype]}", self.buf, self.pos))
                    self.pos += length * width
                    return values
                self.pos += length * width
                return ArrayInfo(etype, length)
            if etype == _STRING:
                for _ in range(length):  # each string carries its own length: walk them, keep none
                    self.string(what, keep=False)
                return ArrayInfo(etype, length)
            if etype == _ARRAY:
                for _ in range(length):
                    self.value(_ARRAY, what)
                return ArrayInfo(etype, length)
        raise InspectError(f"{self.path}: corrupt GGUF header ({what} has unknown value type {vtype})", path=self.path)


def _type_tables() -> tuple[dict[int, str], dict[int, tuple[int, int]]]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    names = {t.value: t.name for t in GGMLQuantizationType}
    return names, {t.value: GGML_QUANT_SIZES[t] for t in GGML_QUANT_SIZES}


def read_gguf_header(path: str | Path) -> GGUFHeader:
    """Parse a GGUF file's metadata and tensor table without reading tensor data.

    Raises InspectError naming the file when it is not GGUF, is of an unsupported version, is cut
    short (header or tensor data), or uses a tensor type the installed `gguf` package does not know.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size < 24:
                raise InspectError(f"{path}: not a GGUF file (only {size} bytes)", path=path)
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, size)
    except OSError as exc:
        raise InspectError(f"{path}: cannot read: {exc.strerror or exc}", path=path) from None


def _parse(buf, path: Path, size: int) -> GGUFHeader:
    if buf[:4] != MAGIC:
        raise InspectError(f"{path}: not a GGUF file (no GGUF magic at the start)", path=path)
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version & 0xFFFF == 0:  # written on a big-endian machine
        endian = ">"
        (version,) = struct.unpack_from(">I", buf, 4)
    if version not in (2, 3):
        raise InspectError(
            f"{path}: GGUF version {version} is not supported (versions 2 and 3 are)",
            path=path,
            hint="Convert the model again with a current llama.cpp." if version == 1 else None,
        )
    cur = _Cursor(buf, path, endian)
    cur.pos = 8
    n_tensors = cur.scalar("Q", "the tensor count")
    n_kv = cur.scalar("Q", "the metadata count")
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        raise InspectError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} metadata keys)", path=path)
    metadata: dict[str, Any] = {}
    for i in range(n_kv):
        key = cur.string(f"metadata key {i}")
        vtype = cur.scalar("I", f"the type of {key!r}")
        metadata[key] = cur.value(vtype, repr(key))
    names, sizes = _type_tables()
    raw_tensors = []
    for i in range(n_tensors):
        name = cur.string(f"tensor name {i}")
        n_dims = cur.scalar("I", f"the dimensions of {name!r}")
        if n_dims > 8:
            raise InspectError(f"{path}: corrupt GGUF header (tensor {name!r} has {n_dims} dimensions)", path=path)
        shape = tuple(cur.scalar("Q", f"the shape of {name!r}") for _ in range(n_dims))
        type_id = cur.scalar("I", f"the type of {name!r}")
        offset = cur.scalar("Q", f"the offset of {name!r}")
        raw_tensors.append((name, shape, type_id, offset))
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise InspectError(f"{path}: corrupt GGUF header (general.alignment {alignment!r} is not a power of two)", path=path)
    data_start = -(-cur.pos // alignment) * alignment
    tensors = []
    end = data_start
    for name, shape, type_id, offset in raw_tensors:
        if type_id not in names:
            from importlib.metadata import version as pkg_version

            raise InspectError(
                f"{path}: tensor {name!r} has type {type_id}, unknown to gguf {pkg_version('gguf')}",
                path=path,
                hint="The file is newer than the installed `gguf` package: `pip install -U gguf`.",
            )
        block, type_size = sizes[type_id]
        n_elements = 1
        for d in shape:
            n_elements *= d
        if shape and shape[0] % block:
            raise InspectError(f"{path}: tensor {name!r} of type {names[type_id]} has a row of {shape[0]}, not a multiple of its block of {block}", path=path)
        n_bytes = n_elements // block * type_size
        tensors.append(GGUFTensor(name, shape, names[type_id], offset, n_elements, n_bytes))
        end = max(end, data_start + offset + n_bytes)
    if end > size:
        raise InspectError(
            f"{path}: truncated: tensors need {end} bytes, file has {size}",
            path=path,
            hint="The file was cut short (interrupted download or write); fetch or write it again.",
        )
    return GGUFHeader(path=path, version=version, size=size, metadata=metadata, tensors=tensors, data_start=data_start)


def file_type_name(value: Any) -> str | None:
    """llama.cpp's name of general.file_type (MOSTLY_Q4_K_M...), None when absent, guessed or unknown."""
    if not isinstance(value, int):
        return None
    from gguf import LlamaFileType

    try:
        name = LlamaFileType(value).name
    except ValueError:
        return None
    return None if name == "GUESSED" else name


def quant_label(file_type: str | None) -> str | None:
    """The short label readers and tools use: MOSTLY_Q4_K_M -> Q4_K_M, ALL_F32 -> F32."""
    if not file_type:
        return None
    return file_type.removeprefix("MOSTLY_").removeprefix("ALL_")


def name_quant_label(filename: str) -> str | None:
    """The quantization label in a file name, as the Hub reads it for `ollama run hf.co/...:TAG`:
    the last match of a llama.cpp file type (Q4_K_M, IQ4_XS) or tensor type (Q5_K, BF16) plus an
    optional _SUFFIX (bartowski's Q5_K_L), upper-cased."""
    from gguf import GGMLQuantizationType, LlamaFileType

    names = {quant_label(t.name) for t in LlamaFileType if t.name != "GUESSED"}
    names |= {t.name for t in GGMLQuantizationType if not t.name.startswith(("I8", "I16", "I32", "I64", "F64"))}
    pattern = "|".join(sorted((re.escape(n) for n in names if n), key=len, reverse=True))
    found = re.findall(rf"(?:{pattern})(?:_[A-Z]+)?", filename.upper())
    return found[-1] if found else None


def split_parts(names: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Group GGUF file names into models: {first file: [every part in order]}, plus problems
    (a split model with a part missing)."""
    models: dict[str, list[str]] = {}
    groups: dict[tuple[str, int], dict[int, str]] = {}
    for name in sorted(names):
        m = SPLIT_NAME.match(Path(name).name)
        if m:
            prefix = str(Path(name).parent / m["prefix"])
            groups.setdefault((prefix, int(m["count"])), {})[int(m["no"])] = name
        else:
            models[name] = [name]
    problems = []
    for (prefix, count), parts in sorted(groups.items()):
        missing = [n for n in range(1, count + 1) if n not in parts]
        if missing:
            names_missing = ", ".join(Path(f"{prefix}-{n:05d}-of-{count:05d}.gguf").as_posix().removeprefix("./") for n in missing)
            which = f"part {missing[0]}" if len(missing) == 1 else f"parts {', '.join(map(str, missing))}"
            problems.append(f"{names_missing} missing ({which} of a model split into {count})")
            continue
        ordered = [parts[n] for n in range(1, count + 1)]
        models[ordered[0]] = ordered
    return dict(sorted(models.items())), problems
