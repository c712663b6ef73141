"""Keep secrets out of everything hubkit writes, prints or publishes.

This is the one place that says what a secret looks like. Two uses:

- **Redaction** (`redact`, `redact_text`): run records, logs, commands and error messages are
  scrubbed before they are written or printed.
- **Scanning** (`scan_file`, `scan_bytes`, `looks_like_secret_file`): files about to leave the
  machine (`hubkit publish`, `hubkit space deploy`) are refused when they hold a token or key.
  Large files are read in overlapping chunks, so a token that straddles a chunk boundary is
  still found and memory stays at one chunk; a safetensors file is scanned through its header
  (tensor names and the `__metadata__` map) and any bytes its tensors do not account for, never
  through the tensors themselves.

Findings name the kind of secret and where it is, never the secret.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterable

REDACTED = "***"

# (what it is, literal prefixes, pattern). ASCII only, so each compiles for text and for bytes
# alike. Every pattern starts with one of its prefixes: a chunk is searched for all prefixes at
# once (one alternation of literals), and a pattern is tried only where its prefix occurs; on this
# machine that scans JSON several times faster than running the patterns one by one.
SECRET_PATTERNS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("Hugging Face token", ("hf_",), r"hf_[A-Za-z0-9]{20,}"),
    ("Hugging Face organization token", ("api_org_",), r"api_org_[A-Za-z0-9]{20,}"),
    ("private key", ("-----BEGIN ",), r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
    ("AWS access key id", ("AKIA", "ASIA"), r"A(?:KI|SI)A[0-9A-Z]{16}(?![0-9A-Z])"),
    ("AWS secret access key", ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY"), r"(?i:aws_secret_access_key)[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{40}"),
    ("Google Cloud API key", ("AIza",), r"AIza[0-9A-Za-z_-]{35}"),
    ("Azure storage account key", ("AccountKey=",), r"AccountKey=[A-Za-z0-9+/]{80,}={0,2}"),
    ("GitHub token", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"), r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,}"),
    ("OpenAI API key", ("sk-",), r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}T3BlbkFJ[A-Za-z0-9_-]{20,}"),
    ("Anthropic API key", ("sk-ant-",), r"sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{40,}"),
    ("Slack token", ("xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxr-"), r"xox[abposr]-[A-Za-z0-9-]{10,}"),
    ("Stripe secret key", ("sk_live_", "rk_live_"), r"[sr]k_live_[A-Za-z0-9]{20,}"),
)
_TEXT_PATTERNS = [(name, re.compile(p)) for name, _, p in SECRET_PATTERNS]
_TEXT_PREFIXES = [prefixes for _, prefixes, _ in SECRET_PATTERNS]
_BYTE_PATTERNS = [(name, tuple(x.encode() for x in pre), re.compile(p.encode())) for name, pre, p in SECRET_PATTERNS]
_BY_PREFIX: dict[bytes, list[tuple[str, re.Pattern]]] = {}
for _name, _prefixes, _pattern in _BYTE_PATTERNS:
    for _x in _prefixes:
        _BY_PREFIX.setdefault(_x, []).append((_name, _pattern))
# Longest first, so "sk-ant-" wins over "sk-". (A lookahead would also see overlapping
# occurrences, but it turns off the regex engine's fast scan: 3 MB/s instead of ~100.)
_ANY_PREFIX = re.compile(b"|".join(re.escape(x) for x in sorted(_BY_PREFIX, key=len, reverse=True)))
_BY_PREFIX[b"sk-ant-"] += _BY_PREFIX[b"sk-"]  # an "sk-ant-..." string may still be an OpenAI key
# A redaction removes a private key's whole block, not only its first line.
_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)", re.DOTALL)
# The compiled text patterns, for callers that match text themselves.
TOKEN_PATTERNS = [p for _, p in _TEXT_PATTERNS]

# File names that are secrets whatever they hold.
SECRET_FILE_NAMES = (
    ".env", ".env.*", "*.pem", "*.key", "id_rsa*", "id_ecdsa*", "id_ed25519*", "id_dsa*", ".netrc", ".git-credentials",
    "token", "*token*.txt", "credentials*", ".huggingface", "*.p12", "*.pfx", ".npmrc", ".pypirc", "service-account*.json",
)

# Exact names only: a substring match would also catch `add_bos_token` or `pad_token`.
SECRET_KEYS = re.compile(
    r"^(token|hf_token|use_auth_token|auth_token|access_token|api_key|apikey|password|secret|client_secret)$",
    re.IGNORECASE,
)
MIN_SECRET_LEN = 8  # never scrub short literals like "True" because a secret happened to equal them
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")

CHUNK = 1 << 20  # bytes read at a time by scan_stream
OVERLAP = 4096  # carried from one chunk to the next: longer than any pattern's shortest match
MAX_SAFETENSORS_HEADER = 100_000_000  # the format's own limit


# -- redaction ------------------------------------------------------------------------------------


def known_tokens() -> list[str]:
    """Token values present in this process's environment (so they can be scrubbed literally)."""
    return [v for k in TOKEN_ENV_VARS if (v := os.environ.get(k)) and len(v) >= MIN_SECRET_LEN]


def redact_text(text: str, extra: list[str] | None = None) -> str:
    """`text` with known token values and anything shaped like a secret replaced by ***."""
    for value in [*known_tokens(), *(extra or [])]:
        if value and len(value) >= MIN_SECRET_LEN:
            text = text.replace(value, REDACTED)
    if "-----BEGIN " in text:
        text = _KEY_BLOCK.sub(REDACTED, text)
    for (_, pattern), prefixes in zip(_TEXT_PATTERNS, _TEXT_PREFIXES):
        if any(x in text for x in prefixes):  # `in` is far faster than a regex pass over a large log
            text = pattern.sub(REDACTED, text)
    return text


def redact(obj: Any, extra: list[str] | None = None) -> Any:
    """A copy of `obj` (JSON-like) with secret-named keys blanked and token strings scrubbed."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEYS.search(k) and v not in (None, "", False) else redact(v, extra)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, extra) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, extra)
    return obj


def split_secret_args(model_args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate secret-named model_args (e.g. `token`) from the rest.

    The secrets travel to the eval process through its environment, never on a command line
    that lm-eval would copy into its results file.
    """
    clean, secrets = {}, {}
    for key, value in model_args.items():
        if SECRET_KEYS.search(key):
            secrets[key] = str(value)
        else:
            clean[key] = value
    return clean, secrets


# -- scanning -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """A secret found in a file: what kind, and where (never the value)."""

    kind: str
    where: str  # "at byte 9,437,190", "in the safetensors metadata, key 'note'", ...

    def __str__(self) -> str:
        return f"{self.kind} ({self.where})"


def looks_like_secret_file(name: str) -> bool:
    """True when a file name alone says it holds credentials (`.env`, `id_rsa`, `*.pem`...)."""
    return any(fnmatch.fnmatch(name, p) for p in SECRET_FILE_NAMES)


_JSON_ESCAPE = re.compile(rb"\\u00([2-7][0-9a-fA-F])|\\(/)")


def _unescape_json(data: bytes) -> bytes:
    r"""ASCII characters written as JSON escapes (`\u0068f_...`, `\/`) as themselves, so a
    token cannot hide from the patterns by being escaped."""
    if (b"\\u00" not in data and b"\\/" not in data) or not _JSON_ESCAPE.search(data):
        return data
    return _JSON_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]) if m.group(1) else b"/", data)


def _search(buf: bytes, literals: list[tuple[str, bytes]]) -> tuple[str, int | None] | None:
    """(kind, offset in buf) of the first pattern or literal in `buf`, or in its JSON-unescaped
    view (then the offset is None: it would not point into the file)."""
    plain = _unescape_json(buf)
    for view in (buf, plain) if plain is not buf else (buf,):
        m = _ANY_PREFIX.search(view)
        while m:
            at = m.start()
            for name, pattern in _BY_PREFIX[m.group()]:
                if pattern.match(view, at):
                    return name, (at if view is buf else None)
            m = _ANY_PREFIX.search(view, at + 1)  # from the next byte: prefixes may overlap
        for name, value in literals:
            i = view.find(value)
            if i >= 0:
                return name, (i if view is buf else None)
    return None


def _at(base: int, offset: int | None) -> str:
    return f"at byte {base + offset:,}" if offset is not None else f"JSON-escaped, in the bytes after {base:,}"


def _literals(extra: Iterable[str]) -> list[tuple[str, bytes]]:
    values = {v for v in [*known_tokens(), *extra] if v and len(v) >= MIN_SECRET_LEN}
    return [("token (the one in use)", v.encode()) for v in sorted(values)]


def scan_bytes(data: bytes, extra: Iterable[str] = ()) -> Finding | None:
    """The first secret in `data` (patterns, plus the literal values in `extra` and the token
    environment variables), or None."""
    hit = _search(data, _literals(extra))
    return Finding(hit[0], _at(0, hit[1])) if hit else None


def scan_stream(fh: BinaryIO, extra: Iterable[str] = (), *, limit: int | None = None, start: int = 0, chunk_size: int = CHUNK) -> Finding | None:
    """Scan a binary stream in chunks of `chunk_size` bytes (at most `limit` bytes), each
    searched together with the last OVERLAP bytes of the previous one: a secret split across two
    reads is found, and memory stays at about one chunk. `start` is the stream's offset in its
    file, for the position reported."""
    literals = _literals(extra)
    overlap = max([OVERLAP, *(len(v) + 64 for _, v in literals)])
    tail, pos, left = b"", start, limit
    while left is None or left > 0:
        block = fh.read(chunk_size if left is None else min(chunk_size, left))
        if not block:
            break
        if left is not None:
            left -= len(block)
        buf = tail + block
        hit = _search(buf, literals)
        if hit:
            return Finding(hit[0], _at(pos, hit[1]))
        tail = buf[-overlap:]
        pos += len(buf) - len(tail)
    return None


def _safetensors_layout(fh: BinaryIO, size: int) -> tuple[bytes, dict, list[tuple[int, int]]] | None:
    """(raw header, parsed header, byte ranges not covered by any tensor) of a safetensors file,
    or None when it is not a well-formed one."""
    head = fh.read(8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    if n > MAX_SAFETENSORS_HEADER or n > size - 8:
        return None
    raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    spans = []
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]):
            return None
        spans.append((8 + n + offsets[0], 8 + n + offsets[1]))
    # Bytes no tensor claims (gaps, trailing data) are not weights: scan them like any file.
    uncovered, at = [], 8 + n
    for begin, end in sorted(spans):
        if begin > at:
            uncovered.append((at, begin))
        at = max(at, end)
    if at < size:
        uncovered.append((at, size))
    return raw, header, uncovered


def scan_safetensors(path: str | Path, extra: Iterable[str] = ()) -> Finding | None:
    """Scan a safetensors file's header (tensor names and the `__metadata__` map, JSON escapes
    undone) and any bytes that no tensor accounts for; the tensors themselves are not read.
    A file that is not well-formed safetensors is scanned whole."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        layout = _safetensors_layout(fh, size)
        if layout is None:
            fh.seek(0)
            return scan_stream(fh, extra)
        raw, header, uncovered = layout
        literals = _literals(extra)
        meta = header.get("__metadata__")
        if isinstance(meta, dict):
            for key, value in meta.items():
                for text in (str(key), value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)):
                    hit = _search(text.encode("utf-8", "surrogatepass"), literals)
                    if hit:
                        return Finding(hit[0], f"in the safetensors metadata, key {str(key)[:60]!r}")
        decoded = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass")
        for view in (raw, decoded):
            hit = _search(view, literals)
            if hit:
                return Finding(hit[0], "in the safetensors header")
        for begin, end in uncovered:
            fh.seek(begin)
            found = scan_stream(fh, extra, limit=end - begin, start=begin)
            if found:
                return Finding(found.kind, f"{found.where}, outside every tensor")
    return None


def scan_file(path: str | Path, extra: Iterable[str] = ()) -> Finding | None:
    """The first secret in the file at `path`, or None: safetensors through `scan_safetensors`,
    anything else streamed whole through `scan_stream`."""
    path = Path(path)
    if path.suffix == ".safetensors":
        return scan_safetensors(path, extra)
    with path.open("rb") as fh:
        return scan_stream(fh, extra)
