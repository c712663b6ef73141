"""Read lm-evaluation-harness command lines as model cards document them.

`hubkit verify` and `hubkit init --from-command` both start from a command somebody wrote into a
README: `python -m lm_eval ...`, `lm_eval ...`, `lm-eval run ...` (0.4.10+), `accelerate launch -m
lm_eval ...`, or the 0.3-era `python main.py --model hf-causal ...`. This module parses such a
command completely and says, field by field, what the text stated (`found`) and what lm-eval would
have used instead (`defaults`, labelled as such), so a re-run never silently changes a setting.

Nothing here runs lm-eval or imports it: the flags are described from lm-eval's own CLI
(`lm_eval/_cli/run.py` in 0.4.13, `lm_eval/__main__.py` in 0.4.0-0.4.9, `main.py` in 0.3.x).
Token values (`HF_TOKEN=hf_...`, `token=...` in model_args) are never kept: they are replaced by
`***` in every field, the verbatim command included.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from .errors import HubkitError
from .secrets import REDACTED, SECRET_KEYS, redact_text


class CommandError(HubkitError, ValueError):
    """A text holds no lm-eval invocation, or one a hubkit eval setup cannot be made from.

    A ValueError too, so library callers can catch it without knowing hubkit's error tree."""

    exit_code = 2
    default_hint = "Pass the command as the card documents it, e.g. `python -m lm_eval --model hf --model_args pretrained=ORG/NAME --tasks arc_challenge`."

# -- recognising an invocation ---------------------------------------------------------------------

# Words that run another program: their own options come before the lm-eval module/script.
_LAUNCHERS = {
    ("accelerate", "launch"): "accelerate launch",
    ("torchrun",): "torchrun",
    ("uv", "run"): "uv run",
    ("poetry", "run"): "poetry run",
    ("srun",): "srun",
}
_PYTHON = re.compile(r"^(?:.*/)?python(?:3(?:\.\d+)?)?$")
_ENV_ASSIGN = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)
# Environment variables whose value is a credential. Exact secret names from hubkit.secrets plus the
# usual suffixes (OPENAI_API_KEY, WANDB_API_KEY, HUGGING_FACE_HUB_TOKEN...).
_SECRET_ENV = re.compile(r"(?i)(^|_)(TOKEN|API_KEY|APIKEY|SECRET|SECRET_KEY|PASSWORD|ACCESS_KEY)$")
_SHELL_STOP = {"&&", "||", ";", "|", "&", ">", ">>", "<", ">&", "<&", "2>", "1>", ";;", "(", ")"}

Dialect = Literal["0.3", "0.4", "0.4.10+"]


def _is_secret_env(name: str) -> bool:
    return bool(_SECRET_ENV.search(name)) or bool(SECRET_KEYS.match(name))


# -- flags -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flag:
    dest: str
    kind: str  # value | bool | optional (nargs='?') | multi (nargs='+')


# Every flag lm-eval's CLI has had from 0.3.x to 0.4.13 (long and short spellings).
_FLAGS: dict[str, _Flag] = {}


def _add(names: str, dest: str, kind: str = "value") -> None:
    for n in names.split():
        _FLAGS[n] = _Flag(dest, kind)


_add("--model -m -M", "model")
_add("--model_args -a", "model_args", "multi")
_add("--tasks -t --task", "tasks", "multi")
_add("--num_fewshot -f", "num_fewshot")
_add("--batch_size -b", "batch_size")
_add("--max_batch_size", "max_batch_size")
_add("--device", "device")
_add("--output_path -o", "output_path")
_add("--limit -L", "limit")
_add("--samples -E", "samples")
_add("--use_cache -c", "use_cache")
_add("--cache_requests", "cache_requests", "optional")
_add("--check_integrity", "check_integrity", "bool")
_add("--write_out -w", "write_out", "bool")
_add("--log_samples -s", "log_samples", "bool")
_add("--system_instruction", "system_instruction")
_add("--apply_chat_template", "apply_chat_template", "optional")
_add("--fewshot_as_multiturn", "fewshot_as_multiturn", "optional")
_add("--show_config", "show_config", "bool")
_add("--include_path", "include_path")
_add("--gen_kwargs", "gen_kwargs", "multi")
_add("--verbosity -v", "verbosity")
_add("--wandb_args", "wandb_args", "multi")
_add("--wandb_config_args", "wandb_config_args", "multi")
_add("--trackio_args", "trackio_args", "multi")
_add("--hf_hub_log_args", "hf_hub_log_args", "multi")
_add("--predict_only -x", "predict_only", "bool")
_add("--seed", "seed")
_add("--trust_remote_code", "trust_remote_code", "bool")
_add("--confirm_run_unsafe_code", "confirm_run_unsafe_code", "bool")
_add("--metadata", "metadata", "multi")
_add("--config -C", "config")
# 0.3.x main.py only
_add("--no_cache", "no_cache", "bool")
_add("--provide_description", "provide_description", "bool")
_add("--description_dict_path", "description_dict_path")
_add("--decontamination_ngrams_path", "decontamination_ngrams_path")
_add("--output_base_path", "output_base_path")
_add("--data_sampling", "data_sampling")

# model_args keys with a fixed meaning, and their types
_BOOL_ARGS = ("load_in_4bit", "load_in_8bit", "bnb_4bit_use_double_quant", "trust_remote_code")
_STR_ARGS = ("pretrained", "peft", "tokenizer", "dtype", "revision", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")
_HF_MODELS = {"hf", "hf-auto", "huggingface", "hf-causal", "hf-causal-experimental", "gpt2"}
_V03_MODELS = {"hf-causal", "hf-causal-experimental", "hf-seq2seq", "gpt2", "gpt3"}
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


# -- result types ------------------------------------------------------------------------------------


class ModelArgs(BaseModel):
    """`--model_args`, typed where lm-eval's HF model gives a key a fixed meaning; every other key
    is kept as the string written (quotes removed)."""

    pretrained: str | None = None
    peft: str | None = None
    tokenizer: str | None = None
    dtype: str | None = None
    revision: str | None = None
    load_in_4bit: bool | None = None
    load_in_8bit: bool | None = None
    bnb_4bit_quant_type: str | None = None
    bnb_4bit_compute_dtype: str | None = None
    bnb_4bit_use_double_quant: bool | None = None
    bnb_4bit_quant_storage: str | None = None
    trust_remote_code: bool | None = None
    other: dict[str, str] = Field(default_factory=dict, description="Keys without a fixed meaning, values as written.")

    def as_dict(self) -> dict[str, Any]:
        """Every key that was given, typed keys first, in one mapping."""
        out = {k: v for k, v in self.model_dump(exclude={"other"}).items() if v is not None}
        out.update(self.other)
        return out


class Default(BaseModel):
    """What lm-eval uses for a setting the command does not state."""

    value: Any = None
    note: str


class LmEvalCommand(BaseModel):
    """One documented lm-eval invocation, parsed.

    `found` names every field the text stated (model_args keys as `model_args.KEY`); `defaults`
    gives, for the rest, what lm-eval would use and why (a default is never presented as found).
    """

    command: str = Field(description="The command as written, continuation lines joined, token values replaced by ***.")
    launcher: str = Field(description="How lm-eval was started: 'python -m lm_eval', 'lm_eval', 'lm-eval run', 'accelerate launch -m lm_eval', 'python main.py'...")
    launcher_args: list[str] = Field(default_factory=list, description="Options given to accelerate/torchrun before lm-eval.")
    dialect: Dialect = Field(description="The lm-eval CLI generation the spelling implies: 0.3 (main.py), 0.4, or 0.4.10+ (`run` subcommand, space-separated lists).")
    env: dict[str, str] = Field(default_factory=dict, description="Environment assignments before the command (secret values as ***).")
    model: str | None = None
    model_args: ModelArgs = Field(default_factory=ModelArgs)
    model_args_raw: str | None = None
    tasks: list[str] = Field(default_factory=list)
    num_fewshot: int | None = None
    batch_size: int | str | None = None
    max_batch_size: int | None = None
    limit: int | float | None = None
    device: str | None = None
    apply_chat_template: bool | str | None = None
    fewshot_as_multiturn: bool | None = None
    system_instruction: str | None = None
    gen_kwargs: dict[str, str] = Field(default_factory=dict)
    gen_kwargs_raw: str | None = None
    seed: list[int | None] | None = None
    output_path: str | None = None
    log_samples: bool | None = None
    write_out: bool | None = None
    include_path: str | None = None
    trust_remote_code: bool | None = None
    use_cache: str | None = None
    cache_requests: str | None = None
    metadata: str | None = None
    other_flags: dict[str, str | bool] = Field(default_factory=dict, description="Known lm-eval flags without a field here (wandb_args, no_cache...).")
    found: list[str] = Field(default_factory=list)
    defaults: dict[str, Default] = Field(default_factory=dict)
    unknown_flags: list[str] = Field(default_factory=list, description="Flags lm-eval does not have, with the value that followed, as written.")
    unresolved: list[str] = Field(default_factory=list, description="Shell variables ($1, ${MODEL}) the text never defines.")
    warnings: list[str] = Field(default_factory=list)

    @property
    def model_family(self) -> str:
        """'hf' for lm-eval's transformers model under any of its names, else the model type."""
        return "hf" if (self.model or "hf") in _HF_MODELS else str(self.model)

    @property
    def loads_4bit(self) -> bool:
        return bool(self.model_args.load_in_4bit)

    def explain(self) -> list[str]:
        """One line per setting: its value and whether the text stated it or it is lm-eval's default."""
        lines = []
        for name in self.found:
            if name.startswith("model_args."):
                value = self.model_args.as_dict().get(name.split(".", 1)[1])
            else:
                value = getattr(self, name, None)
                if value is None:
                    value = self.other_flags.get(name)
            lines.append(f"{name} = {value!r} (found)")
        for name, d in self.defaults.items():
            lines.append(f"{name} = {d.value!r} (default: {d.note})")
        for f in self.unknown_flags:
            lines.append(f"{f} (not an lm-eval flag)")
        for v in self.unresolved:
            lines.append(f"{v} (shell variable the card never defines)")
        return lines


class CommandLocation(BaseModel):
    """Where a command sits in a card: the kind of block and its 1-based lines."""

    kind: Literal["fenced", "indented", "inline", "text"]
    line: int
    end_line: int
    lang: str | None = Field(None, description="The fence's info string (bash, shell...), if any.")
    variables: dict[str, str] = Field(default_factory=dict, description="Shell assignments earlier in the same block (secret values as ***).")


class FoundCommand(NamedTuple):
    command: str
    location: CommandLocation


# -- small parsers -------------------------------------------------------------------------------------


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def split_top_level(text: str) -> list[str]:
    """Split on commas outside quotes and brackets (how lm-eval splits `k=v,k=v`)."""
    parts, buf, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth = max(depth - 1, 0)
        elif ch == "," and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def parse_kv(text: str, *, what: str, warnings: list[str]) -> dict[str, str]:
    """`k=v,k=v` (or a JSON object) as an ordered mapping of strings; values keep any `=` after
    the first and lose their surrounding quotes."""
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            warnings.append(f"{what}: looks like JSON but does not parse: {text!r}")
        else:
            if isinstance(data, dict):
                return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    out: dict[str, str] = {}
    for item in split_top_level(text):
        if "=" not in item:
            warnings.append(f"{what}: {item!r} is not key=value")
            continue
        key, value = item.split("=", 1)
        key = _unquote(key.strip())
        if key in out:
            warnings.append(f"{what}: {key} given twice; lm-eval keeps the last ({out[key]!r} -> {_unquote(value)!r})")
        out[key] = _unquote(value)
    return out


def _parse_bool(value: str | bool) -> bool | None:
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _parse_int(value: str) -> int | None:
    v = value.strip()
    return int(v) if re.fullmatch(r"[+-]?\d+", v) else None


def _parse_seed(value: str) -> list[int | None] | None:
    items = [s.strip() for s in value.split(",")]
    out: list[int | None] = []
    for s in items:
        if s.lower() == "none":
            out.append(None)
        elif re.fullmatch(r"-?\d+", s):
            out.append(int(s))
        else:
            return None
    if len(out) == 1:
        out = out * 4
    elif len(out) == 3:
        out.append(1234)  # lm-eval fills a missing fourth slot (few-shot seed) with its default
    return out


# -- tokens -----------------------------------------------------------------------------------------


def join_continuations(text: str) -> str:
    """Join shell line continuations (a backslash at the end of a line) into one line."""
    return re.sub(r"\\[ \t]*\r?\n[ \t]*", " ", text)


_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_][A-Za-z0-9_./:-]*)>")


def _tokens(line: str, warnings: list[str]) -> list[str]:
    # cards write placeholders as <tokenizer> or <your_model>: words, not shell redirections
    protected = _PLACEHOLDER.sub("\x02\\1\x03", line)
    lex = shlex.shlex(protected, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        tokens = list(lex)
    except ValueError as exc:  # an unbalanced quote in the card: fall back to plain words
        warnings.append(f"could not split the command like a shell ({exc}); split on whitespace")
        tokens = protected.split()
    return [t.replace("\x02", "<").replace("\x03", ">") for t in tokens]


def _is_lm_eval_exe(tok: str) -> bool:
    """`lm_eval`, `lm-eval`, or either behind a path (`.venv/bin/lm_eval`)."""
    return tok.rsplit("/", 1)[-1] in ("lm_eval", "lm-eval")


_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|\{?(\d+)\}?)")


def _substitute(token: str, variables: dict[str, str], unresolved: list[str]) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name and name in variables:
            return variables[name]
        ref = m.group(0)
        if ref not in unresolved:
            unresolved.append(ref)
        return ref

    return _VAR.sub(repl, token)


def _find_start(tokens: list[str]) -> tuple[int, int, str, list[str]] | None:
    """(index of the first lm-eval argument, index where the launcher begins, launcher name,
    launcher options) for the first lm-eval invocation in `tokens`, or None."""
    i = 0
    while i < len(tokens):
        start = i
        tok = tokens[i].lstrip("!")  # notebook cells: `!lm_eval ...`
        if tok in ("$", ">>>"):
            i += 1
            continue
        prefix = ""
        launcher_args: list[str] = []
        for words, name in _LAUNCHERS.items():
            if tuple(t.lstrip("!") for t in tokens[i : i + len(words)]) == words:
                prefix = name
                j = i + len(words)
                # the launcher's own options run up to the lm-eval module or script
                while j < len(tokens) and tokens[j] not in ("lm_eval", "lm-eval", "main.py") and not tokens[j].endswith("/main.py") and tokens[j] not in _SHELL_STOP:
                    launcher_args.append(tokens[j])
                    j += 1
                if j < len(tokens) and tokens[j] in ("lm_eval", "lm-eval"):
                    has_m = "-m" in launcher_args or "--module" in launcher_args
                    launcher_args = [a for a in launcher_args if a not in ("-m", "--module")]
                    name = f"{prefix} -m lm_eval" if has_m else f"{prefix} {tokens[j]}"
                    k = j + 1
                    if k < len(tokens) and tokens[k] == "run":
                        name += " run"
                        k += 1
                    return k, start, name, launcher_args
                if j < len(tokens) and (tokens[j] == "main.py" or tokens[j].endswith("/main.py")):
                    return j + 1, start, f"{prefix} main.py", launcher_args
                break
        if _PYTHON.match(tok) or (tok.startswith("$") and tokens[i + 1 : i + 3] == ["-m", "lm_eval"]):
            # a python interpreter, or a variable holding one (`$PY -m lm_eval`)
            j = i + 1
            while j < len(tokens) and tokens[j] in ("-u", "-X", "-O"):
                j += 1
            if j + 1 < len(tokens) and tokens[j] == "-m" and tokens[j + 1] == "lm_eval":
                name = f"{tok} -m lm_eval"
                k = j + 2
                if k < len(tokens) and tokens[k] == "run":
                    name += " run"
                    k += 1
                return k, start, name, []
            if j < len(tokens) and (tokens[j] == "main.py" or tokens[j].endswith("/main.py")):
                rest = tokens[j + 1 :]
                if any(t.split("=")[0] in ("--model", "--tasks", "--model_args") for t in rest):
                    return j + 1, start, f"{tok} main.py", []
        if _is_lm_eval_exe(tok):
            k = i + 1
            name = tok
            if k < len(tokens) and tokens[k] in ("ls", "list", "validate", "--help", "-h"):
                i += 1
                continue
            if k < len(tokens) and tokens[k] == "run":
                name += " run"
                k += 1
            return k, start, name, []
        i += 1
    return None


def is_lm_eval_command(line: str) -> bool:
    """Whether `line` (continuations joined) contains an lm-eval evaluation invocation."""
    return _find_start(_tokens(line, [])) is not None


# -- the parser -----------------------------------------------------------------------------------


def redact_command(text: str) -> str:
    """`text` with credential values removed: secret-named environment assignments and
    key=value pairs (`HF_TOKEN=...`, `token=...`) and anything shaped like a Hub token."""

    def env_repl(m: re.Match) -> str:
        return f"{m.group(1)}{m.group(2)}={REDACTED}" if _is_secret_env(m.group(2)) else m.group(0)

    text = re.sub(r"(^|[\s;&|(])([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|[^\s,;&|]+)", env_repl, text)
    text = re.sub(
        r"(?i)(?<![\w-])(token|hf_token|use_auth_token|auth_token|access_token|api_key|apikey|password|secret|client_secret)=(\"[^\"]*\"|'[^']*'|[^\s,;&|\"']+)",
        lambda m: m.group(0) if _parse_bool(_unquote(m.group(2))) is not None else f"{m.group(1)}={REDACTED}",
        text,
    )
    return redact_text(text)


def parse_lm_eval_command(text: str, *, variables: dict[str, str] | None = None) -> LmEvalCommand:
    """Parse one documented lm-eval command (any spelling from 0.3.x to 0.4.13).

    `text` may span lines joined by backslashes and may carry environment assignments, a launcher
    (accelerate, torchrun, uv run) and trailing shell (`&&`, `|`, redirections), which are left
    out. `variables` are shell assignments seen earlier in the same block; `$NAME` is replaced by
    them, anything else stays as written and is listed in `unresolved`.

    Returns an LmEvalCommand. Raises CommandError (a ValueError) when the text holds no lm-eval
    invocation.
    """
    warnings: list[str] = []
    unresolved: list[str] = []
    variables = dict(variables or {})
    joined = join_continuations(text)
    lines = [ln.strip() for ln in joined.splitlines() if ln.strip()]
    # A command broken over lines without backslashes: its flags continue on the following lines.
    line, extra = "", []
    for i, ln in enumerate(lines):
        if is_lm_eval_command(ln):
            line = ln
            for nxt in lines[i + 1 :]:
                if nxt.startswith("-"):
                    extra.append(nxt)
                else:
                    break
            break
    if not line:
        raise CommandError("no lm-eval invocation (python -m lm_eval, lm_eval, lm-eval, lm-eval run, accelerate launch -m lm_eval, python main.py) in the text")
    if extra:
        warnings.append(f"{len(extra)} line(s) of flags follow the command without a backslash; read as part of it")
        line = " ".join([line, *extra])
    tokens = _tokens(line, warnings)
    begin, launcher_at, launcher, launcher_args = _find_start(tokens)  # type: ignore[misc]

    env: dict[str, str] = {}
    for tok in tokens[:launcher_at]:
        m = _ENV_ASSIGN.match(tok)
        if m:
            name, value = m.groups()
            env[name] = REDACTED if _is_secret_env(name) else value
        elif tok not in ("env", "$", ">>>"):
            env = {}  # words before the launcher that are not assignments: another command
    args = []
    rest = tokens[begin:]
    for k, tok in enumerate(rest):
        if tok in _SHELL_STOP or re.fullmatch(r"[();<>|&]+", tok):
            break
        if tok.isdigit() and k + 1 < len(rest) and re.fullmatch(r"[<>]&?|>>", rest[k + 1]):
            break  # the file descriptor of a redirection (`2>&1`)
        args.append(_substitute(tok, variables, unresolved) if "$" in tok else tok)

    values: dict[str, Any] = {}
    raw_multi: dict[str, list[str]] = {}
    unknown: list[str] = []
    positional: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("-") or tok in ("-", "--"):
            positional.append(tok)
            i += 1
            continue
        name, eq, inline = tok.partition("=")
        spec = _FLAGS.get(name)
        if spec is None:
            nxt = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("-") else None
            if eq:
                unknown.append(tok)
            elif nxt is not None:
                unknown.append(f"{tok} {nxt}")
                i += 1
            else:
                unknown.append(tok)
            i += 1
            continue
        if spec.kind == "bool":
            values[spec.dest] = True
            i += 1
        elif spec.kind == "optional":
            if eq:
                values[spec.dest] = inline
                i += 1
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                values[spec.dest] = args[i + 1]
                i += 2
            else:
                values[spec.dest] = True
                i += 1
        elif spec.kind == "multi":
            items = [inline] if eq else []
            j = i + 1
            if not eq:
                while j < len(args) and not args[j].startswith("-"):
                    items.append(args[j])
                    j += 1
            if not items:
                warnings.append(f"{name} has no value")
            if spec.dest in raw_multi:
                warnings.append(f"{name} given twice; lm-eval merges (0.4.10+) or keeps the last (earlier versions)")
            raw_multi.setdefault(spec.dest, []).extend(items)
            i = j if not eq else i + 1
        else:
            if eq:
                values[spec.dest] = inline
                i += 1
            elif i + 1 < len(args):
                values[spec.dest] = args[i + 1]
                i += 2
            else:
                warnings.append(f"{name} has no value")
                i += 1
    if positional:
        warnings.append(f"words lm-eval would not accept: {' '.join(positional)}")

    cmd = LmEvalCommand(
        command=redact_command(line),
        launcher=launcher,
        launcher_args=launcher_args,
        dialect="0.4",
        env=env,
        unknown_flags=unknown,
        unresolved=unresolved,
        warnings=warnings,
    )
    found: list[str] = []

    if "model" in values:
        cmd.model = str(values["model"])
        found.append("model")
    if "model_args" in raw_multi:
        raw = " ".join(raw_multi["model_args"])
        cmd.model_args_raw = redact_command(raw)
        merged: dict[str, str] = {}
        for item in raw_multi["model_args"]:
            merged.update(parse_kv(item, what="--model_args", warnings=warnings))
        cmd.model_args = _typed_model_args(merged, warnings)
        found += [f"model_args.{k}" for k, v in cmd.model_args.as_dict().items()]
        for v in cmd.model_args.as_dict().values():
            if isinstance(v, str) and _PLACEHOLDER.fullmatch(v) and v not in unresolved:
                unresolved.append(v)  # '<tokenizer>': the card leaves it to the reader
    if "tasks" in raw_multi:
        tasks = [t.strip().strip("\"'") for item in raw_multi["tasks"] for t in item.split(",")]
        cmd.tasks = [t for t in tasks if t]
        if len(raw_multi["tasks"]) > 1 and any(item.endswith(",") for item in raw_multi["tasks"][:-1]):
            warnings.append("--tasks has spaces after its commas: only lm-eval 0.4.10+ reads the words after the first")
        found.append("tasks")
    if "num_fewshot" in values:
        n = _parse_int(str(values["num_fewshot"]))
        if n is None:
            warnings.append(f"--num_fewshot {values['num_fewshot']!r} is not one integer")
        else:
            cmd.num_fewshot = n
            found.append("num_fewshot")
    if "batch_size" in values:
        b = str(values["batch_size"])
        n = _parse_int(b)
        if n is not None:
            cmd.batch_size = n
        elif re.fullmatch(r"auto(:\d+)?", b):
            cmd.batch_size = b
        else:
            warnings.append(f"--batch_size {b!r} is neither an integer nor auto / auto:N")
            cmd.batch_size = b
        found.append("batch_size")
    if "max_batch_size" in values:
        cmd.max_batch_size = _parse_int(str(values["max_batch_size"]))
        found.append("max_batch_size")
    if "limit" in values:
        text_limit = str(values["limit"])
        n = _parse_int(text_limit)
        if n is not None:
            cmd.limit = n
        else:
            try:
                cmd.limit = float(text_limit)
            except ValueError:
                warnings.append(f"--limit {text_limit!r} is not a number")
        if cmd.limit is not None:
            found.append("limit")
    for name in ("device", "output_path", "include_path", "system_instruction", "use_cache", "cache_requests"):
        if name in values:
            setattr(cmd, name, str(values[name]))
            found.append(name)
    if "apply_chat_template" in values:
        v = values["apply_chat_template"]
        b = _parse_bool(v) if isinstance(v, str) else v
        cmd.apply_chat_template = b if b is not None else v
        found.append("apply_chat_template")
    if "fewshot_as_multiturn" in values:
        v = values["fewshot_as_multiturn"]
        b = _parse_bool(v) if isinstance(v, str) else v
        if b is None:
            warnings.append(f"--fewshot_as_multiturn {v!r} is not true/false")
        cmd.fewshot_as_multiturn = b
        found.append("fewshot_as_multiturn")
    if "gen_kwargs" in raw_multi:
        cmd.gen_kwargs_raw = " ".join(raw_multi["gen_kwargs"])
        for item in raw_multi["gen_kwargs"]:
            cmd.gen_kwargs.update(parse_kv(item, what="--gen_kwargs", warnings=warnings))
        found.append("gen_kwargs")
    if "seed" in values:
        cmd.seed = _parse_seed(str(values["seed"]))
        if cmd.seed is None:
            warnings.append(f"--seed {values['seed']!r} is not an integer or a list of four")
        else:
            found.append("seed")
    for name in ("log_samples", "write_out", "trust_remote_code"):
        if name in values:
            setattr(cmd, name, True)
            found.append(name)
    if "metadata" in raw_multi:
        cmd.metadata = " ".join(raw_multi["metadata"])
        found.append("metadata")
    for dest, v in values.items():
        if dest not in LmEvalCommand.model_fields:
            cmd.other_flags[dest] = v if isinstance(v, bool) else redact_command(str(v))
            found.append(dest)
    for dest, items in raw_multi.items():
        if dest not in LmEvalCommand.model_fields:
            cmd.other_flags[dest] = redact_command(" ".join(items))
            found.append(dest)
    cmd.found = found
    cmd.dialect = _dialect(cmd, raw_multi)
    cmd.defaults = _defaults(cmd)
    if cmd.dialect == "0.3" and any(t.startswith("hendrycksTest") or t == "truthfulqa_mc" for t in cmd.tasks):
        warnings.append("lm-eval 0.3 task names (hendrycksTest-*, truthfulqa_mc) are mmlu / truthfulqa_mc1+mc2 in 0.4")
    if cmd.model in _V03_MODELS and launcher != "python main.py" and not launcher.endswith("main.py"):
        warnings.append(f"--model {cmd.model} exists only in lm-eval 0.3.x; 0.4 calls it hf")
    cmd.warnings, cmd.unresolved = warnings, unresolved  # the model holds copies of the lists it was built with
    return cmd


def _typed_model_args(raw: dict[str, str], warnings: list[str]) -> ModelArgs:
    known: dict[str, Any] = {}
    other: dict[str, str] = {}
    for key, value in raw.items():
        if SECRET_KEYS.match(key):
            other[key] = REDACTED
        elif key in _BOOL_ARGS:
            b = _parse_bool(value)
            if b is None:
                warnings.append(f"model_args {key}={value!r} is not true/false; kept as written")
                other[key] = value
            else:
                known[key] = b
        elif key in _STR_ARGS:
            known[key] = value
        else:
            other[key] = redact_text(value)
    return ModelArgs(**known, other=other)


def _dialect(cmd: LmEvalCommand, raw_multi: dict[str, list[str]]) -> Dialect:
    if cmd.launcher.endswith("main.py") or (cmd.model or "") in _V03_MODELS or "no_cache" in cmd.other_flags:
        return "0.3"
    if cmd.launcher.endswith(" run") or any(len(raw_multi.get(k, [])) > 1 for k in ("tasks", "model_args", "gen_kwargs")):
        return "0.4.10+"
    return "0.4"


def _defaults(cmd: LmEvalCommand) -> dict[str, Default]:
    """What lm-eval uses for every setting that matters to a re-run and that the text leaves out."""
    v03 = cmd.dialect == "0.3"
    d: dict[str, Default] = {}
    found = set(cmd.found)
    if "model" not in found:
        d["model"] = Default(value=None if v03 else "hf", note="0.3's main.py requires --model" if v03 else "lm-eval 0.4's default model type")
    if "num_fewshot" not in found:
        d["num_fewshot"] = Default(value=0, note="0.3's main.py default") if v03 else Default(value=None, note="each task's own num_fewshot (0 for most tasks)")
    if "batch_size" not in found:
        d["batch_size"] = Default(value=1, note="lm-eval's default")
    if "limit" not in found:
        d["limit"] = Default(value=None, note="every document of each task")
    if "device" not in found and cmd.model_family == "hf":
        d["device"] = Default(value="cuda", note="lm-eval's HF model picks CUDA when available" if v03 else "lm-eval's CLI default (cuda:0 in 0.4.13)")
    if cmd.model_family == "hf":
        if "model_args.dtype" not in found:
            d["model_args.dtype"] = Default(value="auto", note="the checkpoint's own torch_dtype")
        if "model_args.revision" not in found:
            d["model_args.revision"] = Default(value="main", note="the Hub's main branch at run time (not pinned)")
        if "model_args.tokenizer" not in found:
            d["model_args.tokenizer"] = Default(value=cmd.model_args.pretrained, note="the pretrained model's tokenizer")
        if "model_args.trust_remote_code" not in found and "trust_remote_code" not in found:
            d["model_args.trust_remote_code"] = Default(value=False, note="lm-eval's default")
        if "model_args.add_bos_token" not in found:
            d["model_args.add_bos_token"] = Default(value=None, note="changed between lm-eval versions; a re-run must state it")
        if cmd.model_args.load_in_4bit and cmd.model_args.bnb_4bit_quant_type is None:
            d["model_args.bnb_4bit_quant_type"] = Default(value="fp4", note="bitsandbytes' default when load_in_4bit is given alone")
    if not v03:
        if "apply_chat_template" not in found:
            d["apply_chat_template"] = Default(value=False, note="prompts are not wrapped in the chat template")
        if "fewshot_as_multiturn" not in found:
            d["fewshot_as_multiturn"] = Default(
                value=bool(cmd.apply_chat_template),
                note="lm-eval 0.4.10+ turns it on with --apply_chat_template; earlier versions leave it off",
            )
        if "gen_kwargs" not in found:
            d["gen_kwargs"] = Default(value={}, note="each task's generation_kwargs")
        if "seed" not in found:
            d["seed"] = Default(value=[0, 1234, 1234, 1234], note="lm-eval 0.4's default seeds (python, numpy, torch, few-shot)")
    else:
        d["seed"] = Default(value=1234, note="lm-eval 0.3 seeds with 1234 and has no --seed flag")
    return d


# -- finding commands in a card ---------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ASSIGN_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\"[^\"]*\"|'[^']*'|\S*)\s*(?:#.*)?$")
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_INVOKE_HINT = re.compile(r"lm[_-]eval|main\.py")


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, int, str]]:
    """(first line, last line, text) with backslash continuations joined."""
    out = []
    i = 0
    while i < len(lines):
        start, text = lines[i]
        end = start
        parts = [text]
        while re.search(r"\\\s*$", parts[-1]) and i + 1 < len(lines):
            parts[-1] = re.sub(r"\\\s*$", "", parts[-1])
            i += 1
            end, nxt = lines[i]
            parts.append(nxt.strip())
        out.append((start, end, " ".join(p.rstrip() for p in parts).strip()))
        i += 1
    return out


def _commands_in_block(lines: list[tuple[int, str]], kind: str, lang: str | None) -> list[FoundCommand]:
    found = []
    variables: dict[str, str] = {}
    logical = _logical_lines(lines)
    k = 0
    while k < len(logical):
        start, end, text = logical[k]
        m = _ASSIGN_LINE.match(text)
        if m and not _INVOKE_HINT.search(text.split("=", 1)[0]):
            name, value = m.group(1), _unquote(m.group(2))
            variables[name] = REDACTED if _is_secret_env(name) else value
            k += 1
            continue
        if _INVOKE_HINT.search(text) and is_lm_eval_command(text):
            # flags continued on following lines without a backslash still belong to it
            while k + 1 < len(logical) and logical[k + 1][2].startswith("--"):
                k += 1
                end = logical[k][1]
                text = f"{text} {logical[k][2]}"
            found.append(FoundCommand(text, CommandLocation(kind=kind, line=start, end_line=end, lang=lang or None, variables=dict(variables))))
        k += 1
    return found


def find_lm_eval_commands(markdown: str) -> list[FoundCommand]:
    """Every lm-eval invocation in a card, in order: in fenced code blocks, indented code blocks,
    inline code spans, and (for cards pasted as plain text) bare lines.

    Returns (command, location) pairs; continuation lines are joined into the command, and
    `location.variables` holds the shell assignments made earlier in the same block, so that
    `parse_lm_eval_command(cmd, variables=loc.variables)` can resolve `$MODEL_ARGS`.
    """
    text = markdown.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    out: list[FoundCommand] = []
    i = 0
    prose: list[tuple[int, str]] = []

    def flush_prose() -> None:
        # prose lines: inline code spans, then bare command lines (plain-text cards)
        for n, ln in prose:
            for m in _INLINE_CODE.finditer(ln):
                code = m.group(2).strip()
                # a bare mention (`python -m lm_eval`) names the tool; a command has flags
                if _INVOKE_HINT.search(code) and " --" in code and is_lm_eval_command(code):
                    out.append(FoundCommand(code, CommandLocation(kind="inline", line=n, end_line=n)))
        bare = [(n, ln) for n, ln in prose if "`" not in ln]
        for cmd in _commands_in_block(bare, "text", None):
            if " --" not in cmd.command:
                continue
            first = cmd.command.lstrip().split()[0].lstrip("!")
            if _is_lm_eval_exe(first) or _PYTHON.match(first) or first in ("accelerate", "torchrun", "uv", "srun") or _ENV_ASSIGN.match(first):
                out.append(cmd)
        prose.clear()

    in_indented: list[tuple[int, str]] = []
    prev_blank = True
    while i < len(lines):
        line = lines[i]
        m = _FENCE.match(line)
        if m:
            flush_prose()
            fence, info = m.group("fence"), m.group("info").strip()
            body: list[tuple[int, str]] = []
            j = i + 1
            while j < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[j]):
                body.append((j + 1, lines[j]))
                j += 1
            out.extend(_commands_in_block(body, "fenced", info.split()[0] if info else None))
            i = j + 1
            prev_blank = False
            continue
        if prev_blank and re.match(r"^( {4}|\t)\S", line) and not re.match(r"^\s*([-*+]|\d+[.)])\s", line):
            flush_prose()
            j = i
            while j < len(lines) and (re.match(r"^( {4}|\t)", lines[j]) or not lines[j].strip()):
                in_indented.append((j + 1, re.sub(r"^( {4}|\t)", "", lines[j])))
                j += 1
            out.extend(_commands_in_block(in_indented, "indented", None))
            in_indented = []
            i = j
            prev_blank = True
            continue
        prose.append((i + 1, line))
        prev_blank = not line.strip()
        i += 1
    flush_prose()
    return out


# -- to a hubkit eval setup ------------------------------------------------------------------------

# model_args that name *what* is evaluated, not *how*: they become artifacts, not setup extras
_SUBJECT_ARGS = {"pretrained", "peft", "tokenizer", "revision", "load_in_4bit", "load_in_8bit"}


def _lm_eval_scalar(value: Any) -> Any:
    """A model_args value the way lm-eval reads it (true/false, int, float, else the string)."""
    if isinstance(value, (bool, int, float)):
        return value
    s = str(value)
    b = _parse_bool(s) if s.lower() in ("true", "false") else None
    if b is not None:
        return b
    if re.fullmatch(r"-?\d+", s):
        return int(s)
    try:
        return float(s) if re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", s) else s
    except ValueError:
        return s


def pins_mapping(pins: Any) -> dict[str, str]:
    """Package -> version specifier from a mapping or from a list of objects with `package` and
    `spec` (cardparse's Pin). The first pin of a package wins; local version tags (`+cu124`) are
    dropped because a pinned environment installs from a package index, which does not serve them."""
    out: dict[str, str] = {}
    items = pins.items() if isinstance(pins, dict) else [(p.package, p.spec) for p in (pins or [])]
    for name, spec in items:
        key = "lm-eval" if name.replace("_", "-").lower() in ("lm-eval", "lm-evaluation-harness") else name
        if key not in out:
            out[key] = re.sub(r"\+[\w.]+$", "", str(spec)) if not str(spec).lstrip().startswith("@") else str(spec)
    return out


def to_eval_setup(cmd: LmEvalCommand, pins: Any = None, *, metrics: list[str] | None = None) -> dict:
    """A hubkit `EvalSetup` mapping for the documented command (validated with
    hubkit.manifest.EvalSetup before it is returned).

    Tasks, few-shot, batch size, limit and model_args extras (dtype, bnb_4bit_*, trust_remote_code,
    other keys) come from the command; the model and adapter (pretrained, peft, tokenizer,
    revision) are not part of a setup, see `artifact_hints`. Strategies: `4bit-lora` first when
    the command loads the base in 4-bit with a peft adapter, then `merged-fp16`. `pins` is a
    mapping or cardparse's pin list; the command is kept verbatim (tokens redacted).
    What the setup cannot express is listed by `eval_setup_gaps`.

    Raises CommandError (a ValueError) when the command names no task (an EvalSetup needs one).
    """
    from .manifest import EvalSetup

    if not cmd.tasks:
        raise CommandError("the documented command names no --tasks", hint="An eval setup needs at least one lm-eval task; add --tasks to the command.")
    setup: dict[str, Any] = {"tasks": list(cmd.tasks)}
    if cmd.num_fewshot is not None:
        setup["num_fewshot"] = cmd.num_fewshot
    if metrics:
        setup["metrics"] = list(metrics)
    if cmd.batch_size is not None:
        setup["batch_size"] = cmd.batch_size
    if cmd.limit is not None:
        setup["limit"] = cmd.limit
    setup["strategies"] = _strategies(cmd)
    pinned = pins_mapping(pins)
    if pinned:
        setup["pins"] = pinned
    extras: dict[str, Any] = {}
    for key, value in cmd.model_args.as_dict().items():
        if key in _SUBJECT_ARGS or SECRET_KEYS.match(key) or value == REDACTED or "$" in str(value):
            continue
        extras[key] = _lm_eval_scalar(value)
    if cmd.trust_remote_code and "trust_remote_code" not in extras:
        extras["trust_remote_code"] = True
    if extras:
        setup["model_args"] = extras
    if cmd.include_path:
        setup["include_path"] = cmd.include_path
    setup["command"] = cmd.command
    return EvalSetup.model_validate(setup).model_dump(exclude_unset=True)


def _strategies(cmd: LmEvalCommand) -> list[str]:
    a = cmd.model_args
    if a.peft and a.load_in_4bit:
        return ["4bit-lora", "merged-fp16"]
    if a.peft:
        dtype = (a.dtype or "").lower()
        if dtype in ("float32", "fp32", "float"):
            return ["fp32-lora", "merged-fp16"]
        if dtype in ("float16", "fp16", "half"):
            return ["merged-fp16"]
        return ["bf16-lora", "merged-fp16"]
    return ["merged-fp16"]


def eval_setup_gaps(cmd: LmEvalCommand, pins: Any = None) -> list[str]:
    """What `to_eval_setup` could not carry over, or had to choose, in words for a TODO list
    (`pins` as given to to_eval_setup: an lm-eval pin answers the 0.3 question)."""
    gaps = []
    a = cmd.model_args
    if cmd.apply_chat_template:
        gaps.append(f"--apply_chat_template{'' if cmd.apply_chat_template is True else ' ' + str(cmd.apply_chat_template)}: an eval setup has no chat-template setting")
    if cmd.fewshot_as_multiturn is not None:
        gaps.append(f"--fewshot_as_multiturn {cmd.fewshot_as_multiturn}: an eval setup has no setting for it")
    if cmd.gen_kwargs:
        gaps.append(f"--gen_kwargs {cmd.gen_kwargs_raw}: an eval setup has no generation settings")
    if cmd.system_instruction:
        gaps.append("--system_instruction: an eval setup has no system instruction")
    if cmd.seed is not None:
        gaps.append(f"--seed {cmd.seed}: hubkit runs use lm-eval's default seeds")
    if a.load_in_8bit:
        gaps.append("load_in_8bit=True: hubkit has no 8-bit strategy")
    if a.peft and not a.load_in_4bit and (a.dtype or "").lower() in ("float16", "fp16", "half"):
        gaps.append("an fp16 LoRA forward: hubkit has no fp16-lora strategy; merged-fp16 is the closest")
    if a.peft and not a.load_in_4bit and not a.dtype:
        gaps.append("the command states no dtype for the LoRA forward: bf16-lora was chosen")
    if cmd.model_family != "hf":
        gaps.append(f"--model {cmd.model}: hubkit evaluates with lm-eval's hf model")
    if cmd.unresolved:
        gaps.append(f"shell variables never defined in the card: {', '.join(cmd.unresolved)}")
    if cmd.dialect == "0.3" and "lm-eval" not in pins_mapping(pins):
        gaps.append("an lm-eval 0.3 command (main.py): pin the harness version it ran with")
    for f in cmd.unknown_flags:
        gaps.append(f"{f}: not an lm-eval flag")
    return gaps


def artifact_hints(cmd: LmEvalCommand) -> dict[str, str]:
    """What the command says about the evaluated model: base (pretrained), adapter (peft),
    tokenizer and revision, as written (shell variables left in place)."""
    a = cmd.model_args
    out = {"base_model": a.pretrained, "adapter": a.peft, "tokenizer": a.tokenizer, "revision": a.revision}
    return {k: v for k, v in out.items() if v}
