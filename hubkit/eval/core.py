"""`hubkit eval`: rerun a manifest's lm-eval setups, strategy by strategy, and record everything.

For each subject (the base, then each adapter) the setup's load strategies are tried in order;
the first that succeeds produces the numbers, and every failed attempt is kept with its reason.
Every attempt runs lm-eval in a subprocess of the eval environment, so a bitsandbytes crash, a
CUDA error or an OOM kill ends that attempt, not hubkit, and the fallback can run.

What one setup shares (environment, device, task data, model args) lives in a `SetupContext`;
how each load strategy becomes an lm-eval invocation lives in the `STRATEGIES` table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .. import __version__
from ..errors import EvalError
from ..hub.client import Source, looks_like_repo_id, resolve
from ..inspection import inspect_adapter, inspect_checkpoint, sha256_file
from ..manifest import Artifact, EvalSetup, Manifest
from ..secrets import redact_text, split_secret_args
from . import envs, taskdata
from .records import RECORD_FORMAT, Attempt, RunRecord, RunStore, now
from .results import parse_results

RUNNER = Path(__file__).with_name("runner_multi.py")
# Model args that only lm-eval's own loading understands: such setups run each subject on its own.
LOAD_ONLY_ARGS = frozenset({"parallelize", "device_map", "max_memory_per_gpu", "max_cpu_memory", "offload_folder", "tp_plan", "delta", "autogptq", "gptqmodel", "gguf_file", "subfolder", "backend"})
# vLLM engine settings a setup's model_args may carry for the vllm-lora strategy (HF strategies drop them).
VLLM_KEYS = frozenset({"gpu_memory_utilization", "max_model_len", "tensor_parallel_size", "data_parallel_size", "max_num_seqs", "enforce_eager", "max_loras", "seed", "quantization"})
BNB_KEYS = ("load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant")
_ERROR_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)):\s?(?P<msg>.*)$")
_OOM = re.compile(r"out of memory|OutOfMemoryError|Cannot allocate memory", re.IGNORECASE)
# A task's Hub dataset could not be read: every strategy would fail the same way.
_NO_DATASET = re.compile(r"Couldn't reach '[^']+' on the Hub|OfflineModeIsEnabled|DatasetNotFoundError|Couldn't find (?:a )?(?:cache|dataset) for")
DATASET_UNREACHABLE = "the task's dataset could not be fetched"
Say = Callable[[str], None]


@dataclass
class Subject:
    """One model to evaluate: the bare base, or an adapter on it."""

    name: str
    artifact: Artifact | None
    base: str  # local dir or Hub id
    base_revision: str | None
    adapter: Path | None = None
    merged: Path | None = None  # a given merged sibling, if any
    tokenizer: str | None = None
    source: Source | None = None  # the base fetched from a Hub (commit, endpoint, LFS hashes)

    @property
    def revision(self) -> str | None:
        """What lm-eval is told to load: the exact commit once the base has been fetched."""
        return self.source.commit if self.source and self.source.commit else self.base_revision


@dataclass
class EvalOutcome:
    subject: str
    record: RunRecord
    cached: bool
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class SetupContext:
    """What every subject of one eval setup shares."""

    manifest: Manifest
    name: str
    setup: EvalSetup
    env: envs.EvalEnv
    env_kind: str
    device: str
    limit: int | float | None
    include_path: Path | None  # the user's own task folder, if any
    overrides: dict[str, dict]  # task -> local data facts (taskdata.override_facts)
    task_facts: dict[str, dict]  # task -> fingerprint (config and data hashes)
    model_args: dict  # lm-eval model_args with explicit defaults, no secrets, no bnb keys
    bnb: dict
    secrets: dict[str, str]
    store: RunStore
    say: Say
    endpoint: str | None = None
    gpus: int = 0  # GPUs of the unit this runs in (more than one: lm-eval's data parallelism)
    share: bool = True  # subjects may share one process (scaleout.one_process)
    max_lora_rank: int = 16  # for vllm-lora: the engine's LoRA rank, enough for every adapter of the setup

    @property
    def lm_tasks(self) -> list[str]:
        """The task names lm-eval is given (local-data copies renamed)."""
        return taskdata.to_lm_eval_names(list(self.setup.tasks), self.overrides)

    @property
    def transformers_major(self) -> int:
        try:
            return int((self.env.version("transformers") or "0").split(".")[0])
        except ValueError:
            return 0


@dataclass
class Invocation:
    """One attempt's process: argv, and for the hand-built 4-bit path the call it runs."""

    argv: list[str]
    call: dict | None = None


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _args_string(args: dict) -> str:
    def fmt(v):
        return str(v) if not isinstance(v, bool) else ("True" if v else "False")

    return ",".join(f"{k}={fmt(v)}" for k, v in args.items())


# -- what to evaluate ------------------------------------------------------------------------


def subjects_for(manifest: Manifest, setup: EvalSetup, only: str | None, include_base: bool) -> list[Subject]:
    names = [only] if only else (setup.artifacts or [n for n, a in manifest.artifacts.items() if a.kind == "adapter"])
    subjects: list[Subject] = []
    for name in names:
        art = manifest.artifact(name)
        if art.kind != "adapter":
            raise EvalError(
                f"artifacts.{name}: kind {art.kind!r} cannot be evaluated as base + LoRA",
                hint="hubkit eval evaluates adapters (and their base); list adapters in evals.NAME.artifacts.",
            )
        adapter = manifest.resolve(art.path)
        facts = inspect_adapter(adapter, hash_files=False)
        base = str(manifest.resolve(art.base_model_path)) if art.base_model_path else (art.base_model or facts.base_model)
        if not base:
            raise EvalError(f"artifacts.{name}: no base model", hint="Set base_model (Hub id) or base_model_path (local dir).")
        merged = None
        if art.merged:
            sibling = manifest.artifacts[art.merged]
            merged = manifest.resolve(sibling.path)
        tokenizer = art.tokenizer or (str(adapter) if facts.tokenizer_files else base)
        subjects.append(Subject(name, art, base, art.base_model_revision, adapter, merged, tokenizer))
    if include_base and subjects:
        first = subjects[0]
        subjects.insert(0, Subject("base", None, first.base, first.base_revision, tokenizer=first.base))
    return subjects


# -- task configs and data ---------------------------------------------------------------------


def task_fingerprint(manifest: Manifest, setup: EvalSetup, env: envs.EvalEnv, overrides: dict[str, dict] | None = None) -> dict:
    """sha256 of each task YAML found in the include path and of the local data files it names;
    built-in tasks are identified by their name and the lm-eval version that defines them, and
    built-in tasks pointed at local data by their config chain and the files' hashes."""
    found: dict[str, dict] = {}
    for task, facts in (overrides or {}).items():
        found[task] = {"data_override": facts, "lm_eval": env.version("lm_eval")}
    include = manifest.resolve(setup.include_path)
    if include and include.is_dir():
        for yml in sorted(include.rglob("*.yaml")):
            try:
                cfg = yaml.safe_load(yml.read_text()) or {}
            except yaml.YAMLError:
                continue
            if not isinstance(cfg, dict) or cfg.get("task") not in setup.tasks or cfg["task"] in found:
                continue
            data_files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
            files = data_files.values() if isinstance(data_files, dict) else [data_files]
            data = {}
            for f in files:
                for path in [f] if isinstance(f, str) else list(f):
                    p = Path(path) if Path(path).is_absolute() else manifest.root / path
                    data[str(p)] = sha256_file(p) if p.is_file() else None
            found[cfg["task"]] = {"config": str(yml), "sha256": sha256_file(yml), "data_files": data}
    for task in setup.tasks:
        found.setdefault(task, {"builtin": True, "lm_eval": env.version("lm_eval")})
    return found


def _all_tasks_local(tasks: list[str], include_path: Path | None) -> bool:
    if not include_path or not include_path.is_dir():
        return False
    names = set()
    for yml in include_path.rglob("*.yaml"):
        cfg = taskdata.load_task_config(yml)
        for key in ("task", "group"):
            if isinstance(cfg.get(key), str):
                names.add(cfg[key])
    return set(tasks) <= names


# -- strategies -> invocations ------------------------------------------------------------------


def _model_args(setup: EvalSetup, device: str) -> tuple[dict, dict, dict]:
    """(model args for lm-eval, bnb settings, secrets) from the setup, with explicit defaults:
    dtype and add_bos_token are always stated, since lm-eval's defaults changed between versions."""
    clean, secrets = split_secret_args(dict(setup.model_args))
    bnb = {k: clean.pop(k) for k in list(clean) if k in BNB_KEYS}
    clean.setdefault("dtype", "bfloat16" if device.startswith("cuda") else "float32")
    clean.setdefault("add_bos_token", False)
    clean.setdefault("trust_remote_code", False)
    return clean, bnb, secrets


def _hf_args(ctx: SetupContext) -> dict:
    """The model args an HF strategy passes to lm-eval (vLLM engine settings left out)."""
    return {k: v for k, v in ctx.model_args.items() if k not in VLLM_KEYS}


def _cli(ctx: SetupContext, args: dict, out_dir: Path, include_path: Path | None, model: str = "hf") -> Invocation:
    setup = ctx.setup
    lm_eval = [ctx.env.python, "-m", "lm_eval"]
    if ctx.gpus > 1 and model == "hf":
        # lm-eval's own data parallelism: one process per GPU, each with a copy of the model
        lm_eval = [ctx.env.python, "-m", "accelerate.commands.launch", "--num_processes", str(ctx.gpus), "-m", "lm_eval"]
    argv = [*lm_eval, "--model", model, "--model_args", _args_string(args), "--tasks", ",".join(ctx.lm_tasks)]
    if setup.num_fewshot is not None:
        argv += ["--num_fewshot", str(setup.num_fewshot)]
    argv += ["--batch_size", str(setup.batch_size)]
    if model == "hf":
        argv += ["--device", ctx.device]
    if setup.gen_kwargs:
        argv += ["--gen_kwargs", _args_string(setup.gen_kwargs)]
    if ctx.limit is not None:
        argv += ["--limit", str(ctx.limit)]
    if include_path:
        argv += ["--include_path", str(include_path)]
    argv += ["--output_path", str(out_dir), "--log_samples"]
    return Invocation(argv)


def _revision(subject: Subject) -> dict:
    return {"revision": subject.revision} if subject.revision else {}


def _call(ctx: SetupContext, strategy: str, subject: Subject, out_dir: Path, include_path: Path | None, **load) -> dict:
    """The runner's call for one subject: what to load and how to evaluate it (runner_multi.py)."""
    hf = _hf_args(ctx)
    extra = {k: v for k, v in hf.items() if k not in ("dtype", "add_bos_token", "trust_remote_code")}
    tasks = ctx.lm_tasks
    call = {
        "strategy": strategy,
        "pretrained": subject.base,
        "revision": subject.revision,
        "peft": str(subject.adapter) if subject.adapter else None,
        "tokenizer": subject.tokenizer,
        "dtype": hf["dtype"],
        "add_bos_token": bool(hf["add_bos_token"]),
        "trust_remote_code": bool(hf["trust_remote_code"]),
        "model_kwargs": extra,
        "device": ctx.device,
        "batch_size": ctx.setup.batch_size,
        "tasks": tasks,
        "num_fewshot": ctx.setup.num_fewshot,
        "gen_kwargs": _args_string(ctx.setup.gen_kwargs) or None,
        "limit": ctx.limit,
        "include_path": str(include_path) if include_path else None,
        "include_defaults": not _all_tasks_local(tasks, include_path),
        "output_path": str(out_dir),
    }
    call.update(load)
    return call


def _runner(ctx: SetupContext, out_dir: Path, call: dict) -> Invocation:
    return Invocation([ctx.env.python, str(out_dir / RUNNER.name), str(out_dir / "call.json")], call)


def _base_invocation(ctx, subject, out_dir, merged, include_path, shared=False) -> Invocation:
    if shared:
        return _runner(ctx, out_dir, _call(ctx, "base", subject, out_dir, include_path, peft=None))
    return _cli(ctx, {"pretrained": subject.base, **_revision(subject), "tokenizer": subject.tokenizer, **_hf_args(ctx)}, out_dir, include_path)


def _merged_invocation(ctx, subject, out_dir, merged, include_path, shared=False) -> Invocation:
    if shared:
        return _runner(ctx, out_dir, _call(ctx, "merged-fp16", subject, out_dir, include_path, pretrained=str(merged), revision=None, peft=None))
    return _cli(ctx, {"pretrained": str(merged), "tokenizer": subject.tokenizer, **_hf_args(ctx)}, out_dir, include_path)


def _lora_invocation(dtype: str):
    def build(ctx, subject, out_dir, merged, include_path, shared=False) -> Invocation:
        if shared:
            return _runner(ctx, out_dir, _call(ctx, f"{'bf16' if dtype == 'bfloat16' else 'fp32'}-lora", subject, out_dir, include_path, dtype=dtype))
        args = {"pretrained": subject.base, **_revision(subject), "peft": str(subject.adapter), "tokenizer": subject.tokenizer, **_hf_args(ctx)}
        args["dtype"] = dtype
        return _cli(ctx, args, out_dir, include_path)

    return build


def _4bit_invocation(ctx, subject, out_dir, merged, include_path, shared=False) -> Invocation:
    compute = str(ctx.bnb.get("bnb_4bit_compute_dtype") or ctx.model_args["dtype"])
    quant = {
        "bnb_4bit_quant_type": str(ctx.bnb.get("bnb_4bit_quant_type") or "nf4"),
        "bnb_4bit_compute_dtype": compute,
        "bnb_4bit_use_double_quant": bool(ctx.bnb.get("bnb_4bit_use_double_quant", True)),
    }
    if ctx.transformers_major < 5:
        # The form older cards document: flat kwargs that transformers < 5 still accepts.
        args = {"pretrained": subject.base, **_revision(subject), "peft": str(subject.adapter), "tokenizer": subject.tokenizer, **_hf_args(ctx), "load_in_4bit": True, **quant}
        return _cli(ctx, args, out_dir, include_path)
    # transformers >= 5 rejects those flat kwargs: the 4-bit base is built by hand (runner_multi.py)
    return _runner(ctx, out_dir, _call(ctx, "4bit-lora", subject, out_dir, include_path, quantize="4bit", **quant))


def _vllm_invocation(ctx, subject, out_dir, merged, include_path, shared=False) -> Invocation:
    """lm-eval's vLLM model with LoRA enabled; on one engine, the adapters of a unit in turn."""
    engine = {k: v for k, v in ctx.model_args.items() if k in VLLM_KEYS}
    if ctx.gpus > 1 and "tensor_parallel_size" not in engine and "data_parallel_size" not in engine:
        engine["data_parallel_size"] = ctx.gpus
    dtype = ctx.model_args["dtype"] if ctx.model_args["dtype"] != "float32" else "auto"
    if shared:
        call = _call(ctx, "vllm-lora", subject, out_dir, include_path, dtype=dtype, max_lora_rank=ctx.max_lora_rank, vllm_kwargs=engine, model_kwargs={})
        return _runner(ctx, out_dir, call)
    args = {
        "pretrained": subject.base, **_revision(subject), "tokenizer": subject.tokenizer, "dtype": dtype,
        "add_bos_token": ctx.model_args["add_bos_token"], "trust_remote_code": ctx.model_args["trust_remote_code"],
        "lora_local_path": str(subject.adapter), "max_lora_rank": ctx.max_lora_rank, **engine,
    }  # fmt: skip
    return _cli(ctx, args, out_dir, include_path, model="vllm")


def _vllm_unavailable(ctx: SetupContext) -> str | None:
    """Why lm-eval's vLLM model cannot run in this setup's environment, or None when it can."""
    if not ctx.env.version("vllm"):
        return "vllm is not installed in the eval environment (pin it in the setup's `pins`, or install it)"
    if not ctx.device.startswith("cuda"):
        return "vLLM needs a CUDA GPU and none is visible here"
    return None


@dataclass(frozen=True)
class Strategy:
    """A way to load a subject for lm-eval. `merged` strategies need the merged checkpoint.
    `build(ctx, subject, out_dir, merged, include_path, shared=False)` makes the attempt's
    process: lm-eval's CLI, or (shared, or where no CLI form exists) a runner call.
    `unavailable(ctx)` says why the strategy cannot run in this environment at all (None when
    it can): such a strategy is recorded as unavailable, not tried, and the next one runs."""

    name: str
    build: Callable[..., Invocation]
    merged: bool = False
    unavailable: Callable[[SetupContext], str | None] = lambda ctx: None


STRATEGIES: dict[str, Strategy] = {
    "base": Strategy("base", _base_invocation),
    "4bit-lora": Strategy("4bit-lora", _4bit_invocation),
    "merged-fp16": Strategy("merged-fp16", _merged_invocation, merged=True),
    "bf16-lora": Strategy("bf16-lora", _lora_invocation("bfloat16")),
    "fp32-lora": Strategy("fp32-lora", _lora_invocation("float32")),
    "vllm-lora": Strategy("vllm-lora", _vllm_invocation, unavailable=_vllm_unavailable),
}


def _version_tuple(text: str | None) -> tuple[int, ...]:
    out = []
    for part in (text or "0").split(".")[:3]:
        digits = re.match(r"\d+", part)
        out.append(int(digits.group()) if digits else 0)
    return tuple(out)


def shareable(ctx: SetupContext, strategy: str) -> bool:
    """Whether an attempt of `strategy` may run in a process shared with other subjects.

    Not when sharing is off, when the unit spreads lm-eval over several GPUs (lm-eval's data
    parallelism loads the model itself), when lm-eval is older than the runner needs, when a
    model arg only means something to lm-eval's own loading (parallelize, device_map...), or for
    4-bit on transformers < 5, whose record keeps the flat command older cards document."""
    if not ctx.share or strategy not in STRATEGIES:
        return False
    if _version_tuple(ctx.env.version("lm_eval")) < (0, 4, 3):
        return False
    if strategy == "vllm-lora":
        return True
    if ctx.gpus > 1:
        return False
    if strategy == "4bit-lora" and ctx.transformers_major < 5:
        return False
    return not (set(ctx.model_args) & LOAD_ONLY_ARGS)


# -- running one attempt ---------------------------------------------------------------------------


def _classify(exit_code: int, log_text: str) -> tuple[str | None, str | None, str]:
    """(exception type, message, human reason) from an attempt's exit code and its whole log.

    Libraries often wrap the root cause (transformers re-raises a bitsandbytes ValueError as a
    RuntimeError), so the first distinct error in the log is named alongside the last.
    """
    errors = []
    for line in log_text.splitlines():
        m = _ERROR_LINE.match(line.strip())
        if m and (m["type"], m["msg"]) not in errors:
            errors.append((m["type"], m["msg"]))
    err_type, err_msg = errors[-1] if errors else (None, None)
    root = errors[0] if len(errors) > 1 else None
    if exit_code in (-9, 137) or _OOM.search(log_text):
        return err_type or "OutOfMemory", err_msg, "out of memory"
    if _NO_DATASET.search(log_text):
        return err_type, err_msg, f"{DATASET_UNREACHABLE} ({err_type}: {err_msg})"[:400] if err_type else DATASET_UNREACHABLE
    if any("CUDA is required" in msg for _, msg in errors):
        return err_type, err_msg, "bitsandbytes needs CUDA, and none is available"
    if err_type:
        reason = f"{err_type}: {err_msg}"
        if root:
            reason += f" (first error: {root[0]}: {root[1]})"
        return err_type, err_msg, reason[:400]
    return None, None, f"exit code {exit_code}"


def _run(argv: list[str], log_path: Path, env_vars: dict, cwd: Path) -> int:
    """Run argv, streaming its output into log_path (and a status line on a terminal)."""
    interactive = sys.stderr.isatty()
    with log_path.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env_vars, cwd=cwd, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(redact_text(line))
            if interactive:
                shown = line.strip().replace("\r", " ")[-100:]
                sys.stderr.write(f"\r\033[K     {shown}")
        code = proc.wait()
    if interactive:
        sys.stderr.write("\r\033[K")
    return code


def _child_env(secrets: dict[str, str], source: Source | None = None) -> dict:
    env = dict(os.environ)
    if source is not None:
        # hubkit already fetched the base at an exact commit: lm-eval reads it from the cache
        # and never touches the network (nor a moving branch) itself.
        env["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import constants

        env["HF_HUB_CACHE"] = str(constants.HF_HUB_CACHE)  # where it was fetched to
        if source.endpoint:
            env["HF_ENDPOINT"] = source.endpoint
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    token = secrets.get("token")
    if token:
        env["HF_TOKEN"] = token
    return env


# -- merged fallback --------------------------------------------------------------------------------


def ensure_merged(subject: Subject, say: Say) -> Path:
    """The merged fp16 checkpoint for `subject`: the given sibling, or one made by hubkit's
    streaming merge (cached in $HUBKIT_HOME/merged, keyed by the adapter's and base's identity)."""
    if subject.merged is not None:
        if (subject.merged / "config.json").is_file():
            return subject.merged
        say(f"   the merged sibling {subject.merged} is not built yet; making one")
    assert subject.adapter is not None
    from ..merge import merge, read_lineage

    facts = inspect_adapter(subject.adapter)
    key = _digest({"adapter": [(f.path, f.sha256) for f in facts.files if f.path.endswith(".safetensors")], "base": subject.base, "rev": subject.revision})[:16]
    out = envs.hubkit_home() / "merged" / f"{key}-float16"
    if read_lineage(out) is not None:
        return out
    say(f"   merging {subject.name} into its base (fp16, streaming) for the merged-fp16 strategy")
    merge(subject.adapter, out, base=subject.base, revision=subject.revision, dtype="float16", force=True, endpoint=subject.source.endpoint if subject.source else None)
    _portable_tokenizer(out)
    return out


def _portable_tokenizer(path: Path) -> None:
    """transformers 5 names its own backend class, which 4.x cannot load; the generic one loads everywhere."""
    cfg_path = path / "tokenizer_config.json"
    if cfg_path.is_file():
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("tokenizer_class") == "TokenizersBackend":
            cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
            cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


# -- weights identity ---------------------------------------------------------------------------


def _safetensors_hashes(facts) -> dict:
    return {f.path: f.sha256 for f in facts.files if f.path.endswith(".safetensors")}


def _base_weights(subject: Subject) -> dict:
    """Where the base is and the sha256 of its weights (read once per eval run: every subject
    of a setup shares it)."""
    base = Path(subject.base)
    if base.is_dir():
        return {"path": str(base), "sha256": _safetensors_hashes(inspect_checkpoint(base))}
    out = {"repo_id": subject.base, "revision": subject.base_revision}
    if subject.source is not None:
        src = subject.source
        out.update(src.provenance())
        out["sha256"] = {f: h for f, h in sorted(src.lfs_sha256.items()) if f.endswith(".safetensors")} or _safetensors_hashes(inspect_checkpoint(src.path))
    return out


def _weights(subject: Subject, base: dict) -> dict:
    out: dict = {"base": dict(base)}
    if subject.adapter:
        out["adapter"] = {"path": str(subject.adapter), "sha256": _safetensors_hashes(inspect_adapter(subject.adapter))}
    if subject.merged and (subject.merged / "config.json").is_file():
        out["merged"] = {"path": str(subject.merged), "sha256": _safetensors_hashes(inspect_checkpoint(subject.merged))}
    return out


def _identity(weights: dict) -> dict:
    """The part of the weights record that identifies content, not location. A merged sibling
    is derived from base + adapter (both in here), so building it later does not invalidate
    earlier runs; its hashes are still recorded in the run's weights."""
    return {k: v.get("sha256") or {"repo_id": v.get("repo_id"), "revision": v.get("revision")} for k, v in weights.items() if k != "merged"}


# -- the public entry point --------------------------------------------------------------------------


def run_eval(
    manifest: Manifest,
    *,
    setup: str | None = None,
    artifact: str | None = None,
    limit: int | float | None = None,
    env: str | None = None,
    rerun: bool = False,
    include_base: bool | None = None,
    runs_dir: str | Path | None = None,
    say: Say = lambda m: None,
    endpoint: str | None = None,
    executor: str | None = None,
    scaleout: dict | None = None,
    token: str | None = None,
) -> list[EvalOutcome]:
    """Run one eval setup (or each) of `manifest` over its adapters (and base).

    The work is cut into units (a setup's subjects, on a shard of its tasks) that run on
    `executor` ('local', 'slurm' or 'hf-jobs'; default: the manifest's `scaleout.executor`);
    `scaleout` overrides fields of the manifest's `scaleout` section (resources, slurm, hf_jobs,
    subjects_per_unit, task_shards, one_process); `token` is the Hub token hf-jobs sends as a job
    secret (default: the logged-in one). A unit whose subjects are all recorded is not run again.

    Returns one EvalOutcome per subject, each with its immutable run record (from the cache when
    an identical run exists, unless `rerun`). Raises EvalError when every strategy failed for a
    subject (its record, with every attempt, is still written) or a unit ended without its
    records (its log named), and EnvError when the pinned environment cannot be built.
    """
    from .units import run_matrix

    if not manifest.evals:
        raise EvalError("the manifest has no eval setups", hint="Add one under `evals:` (see the README's manifest reference).")
    names = [setup] if setup else list(manifest.evals)
    for name in names:
        if name not in manifest.evals:
            raise EvalError(f"no eval setup named {name!r}", hint=f"Known setups: {', '.join(manifest.evals)}.")
    if limit is not None and (isinstance(limit, bool) or limit <= 0):
        raise EvalError(f"--limit {limit}: expected a positive number of documents (or a fraction below 1)")
    return run_matrix(
        manifest, names, artifact=artifact, limit=limit, env_kind=env, rerun=rerun, include_base=include_base,
        runs_dir=Path(runs_dir) if runs_dir else manifest.root / "runs", say=say, endpoint=endpoint,
        executor=executor, overrides=scaleout or {}, token=token,
    )  # fmt: skip


def narrowed(setup: EvalSetup, tasks: list[str] | None) -> EvalSetup:
    """`setup` restricted to `tasks` (a shard of its tasks), with the local data those tasks read."""
    if tasks is None or list(tasks) == list(setup.tasks):
        return setup
    others = set(setup.tasks) - set(tasks)
    data = {k: v for k, v in setup.data.items() if k not in others}
    return setup.model_copy(update={"tasks": list(tasks), "data": data})


def prepare_setup(
    manifest: Manifest, name: str, *, limit=None, env_kind: str | None = None, store: RunStore, say: Say = lambda m: None,
    endpoint: str | None = None, tasks: list[str] | None = None, gpus: int = 0, share: bool = True,
) -> SetupContext:
    """Everything one setup's subjects share: the environment (built or reused), the device,
    the task data checks. `tasks` narrows the setup to a shard of its tasks; `gpus` is what the
    unit holds; `share` lets subjects share a process. Raises EvalError before anything runs
    when the tasks cannot run here."""
    setup = narrowed(manifest.evals[name], tasks)
    limit = limit if limit is not None else setup.limit
    kind = env_kind or setup.env
    say(f"== eval setup {name!r}: tasks {', '.join(setup.tasks)}, few-shot {setup.num_fewshot}, strategies {' -> '.join(setup.strategies)}")
    if kind == "pinned":
        env = envs.pinned_env(setup.pins, needs_4bit="4bit-lora" in setup.strategies, exclude_newer=setup.exclude_newer, say=lambda m: say(f"   {m}"))
        say(f"   environment {env.key} ({'created' if env.created else 'reused'} in {env.setup_seconds:.1f}s)")
    else:
        env = envs.current_env(setup.pins)
        say(f"   environment: current interpreter ({env.python})")
    for problem in env.mismatches:
        say(f"   warning: version mismatch: {problem}")
    device = "cuda:0" if env.probe.get("cuda_available") else "cpu"
    lm_eval_dir = env.probe.get("lm_eval_dir")
    overrides = taskdata.override_facts(manifest, setup, lm_eval_dir, setup_name=name) if setup.data else {}
    for task, facts in overrides.items():
        say(f"   {task}: lm-eval's config with local data ({', '.join(facts['files'])})")
    unreachable = taskdata.unreachable_datasets(list(setup.tasks), lm_eval_dir, set(overrides))
    if unreachable:
        task, dataset = next(iter(unreachable.items()))
        raise EvalError(
            f"evals.{name}: {task} reads the Hub dataset {dataset}, which is not cached here and cannot be fetched (offline)",
            hint=taskdata.DATASET_HINT.format(task=task),
        )
    clean, bnb, secrets = _model_args(setup, device)
    return SetupContext(
        manifest=manifest, name=name, setup=setup, env=env, env_kind=kind, device=device, limit=limit,
        include_path=manifest.resolve(setup.include_path), overrides=overrides,
        task_facts=task_fingerprint(manifest, setup, env, overrides), model_args=clean, bnb=bnb, secrets=secrets,
        store=store, say=say, endpoint=endpoint, gpus=gpus, share=share,
    )


@dataclass
class SubjectPlan:
    """One subject of a setup, ready to run: its strategies, weights record and cache key."""

    subject: Subject
    strategies: list[str]
    weights: dict
    cache_key: str


def plan_subjects(ctx: SetupContext, only: str | None, include_base: bool | None, names: list[str] | None = None) -> list[SubjectPlan]:
    """The setup's subjects (or those in `names`) with their weights hashed and cache keys made;
    a base given as a Hub id is fetched once (or found in the cache), pinned to its commit."""
    setup = ctx.setup
    subjects = subjects_for(ctx.manifest, setup, only, setup.include_base if include_base is None else include_base)
    if names is not None:
        subjects = [s for s in subjects if s.name in names]
    ranks = [inspect_adapter(s.adapter, hash_files=False).r for s in subjects if s.adapter is not None]
    ctx.max_lora_rank = max([16, *[r for r in ranks if isinstance(r, int)]])
    plans = []
    bases: dict[tuple, tuple[Source | None, dict]] = {}  # (base, revision) -> fetched source, weights record
    for subject in subjects:
        key = (subject.base, subject.base_revision)
        if key not in bases:
            if not Path(subject.base).is_dir() and looks_like_repo_id(subject.base):
                subject.source = resolve(subject.base, revision=subject.base_revision, what=f"{subject.name}: base model", endpoint=ctx.endpoint, error=EvalError)
                ctx.say(f"   base {subject.base} at {subject.source.commit or subject.base_revision or 'main'} ({subject.source.path})")
            bases[key] = (subject.source, _base_weights(subject))
        subject.source = bases[key][0]
        weights = _weights(subject, bases[key][1])
        strategies = ["base"] if subject.artifact is None else list(setup.strategies)
        cache_key = _digest(
            {
                "format": RECORD_FORMAT,
                "weights": _identity(weights),
                "tasks": {t: {k: v for k, v in f.items() if k != "config"} for t, f in ctx.task_facts.items()},
                "num_fewshot": setup.num_fewshot,
                "limit": ctx.limit,
                "batch_size": setup.batch_size,
                "pins": setup.pins,
                "env": ctx.env_kind,
                "strategies": strategies,
                "model_args": ctx.model_args,
                "gen_kwargs": setup.gen_kwargs,
                "tokenizer_is_adapter": subject.tokenizer == str(subject.adapter),
            }
        )
        plans.append(SubjectPlan(subject, strategies, weights, cache_key))
    return plans


def run_planned(ctx: SetupContext, plans: list[SubjectPlan], *, rerun: bool = False) -> list[EvalOutcome]:
    """Run (or take from the cache, unless `rerun`) each planned subject; subjects share
    processes where `shareable`. Returns one outcome per plan, in order. Raises EvalError when
    a task's data cannot be read (every subject would fail the same way)."""
    outcomes: dict[int, EvalOutcome] = {}
    todo = []
    for i, plan in enumerate(plans):
        cached = None if rerun else ctx.store.find_cached(plan.cache_key)
        if cached:
            ctx.say(f"   {plan.subject.name}: cached run {cached.run_id} ({cached.strategy})")
            outcomes[i] = EvalOutcome(plan.subject.name, cached, True)
        else:
            todo.append(i)
    for i, outcome in zip(todo, run_subjects(ctx, [plans[i] for i in todo])):
        outcomes[i] = outcome
    done = [outcomes[i] for i in sorted(outcomes)]
    for outcome in done:
        reason = outcome.attempts[-1].reason if outcome.attempts else None
        if not outcome.record.ok and reason and reason.startswith(DATASET_UNREACHABLE):
            # every subject reads the same data: stop here instead of failing each in turn
            raise EvalError(
                f"evals.{ctx.name}: {outcome.subject}: {reason} (record {outcome.record.run_id})",
                hint=taskdata.DATASET_HINT.format(task=ctx.setup.tasks[0]),
            )
    return done


# -- running subjects --------------------------------------------------------------------------------


@dataclass
class Prepared:
    """An attempt ready to run: its strategy, folder and process."""

    strategy: str
    index: int
    a_dir: Path
    inv: Invocation
    t0: float


class SubjectRun:
    """One subject's record in the making: its strategies tried in order, attempt by attempt."""

    def __init__(self, ctx: SetupContext, plan: SubjectPlan):
        self.ctx, self.plan, self.subject = ctx, plan, plan.subject
        self.strategies, self.weights, self.cache_key = plan.strategies, plan.weights, plan.cache_key
        self.started = now()
        self.t0 = time.perf_counter()
        stamp = self.started.replace("-", "").replace(":", "")[:15]
        self.run_id = f"{stamp}-{ctx.name}-{self.subject.name}-{self.cache_key[:8]}"
        self.tmp = ctx.store.start(self.run_id)
        self.final = ctx.store.root / self.run_id  # where the record will live: recorded paths name it
        self.include_path = ctx.include_path
        if ctx.overrides:
            # The generated task configs live in the record, so its reproduce line keeps working.
            self.include_path = taskdata.write_include_dir(self.tmp / "tasks", ctx.overrides, self.include_path)
        self.attempts: list[Attempt] = []
        self.winner: Attempt | None = None
        self.stopped = False
        self._next = 0

    @property
    def done(self) -> bool:
        return self.winner is not None or self.stopped or self._next >= len(self.strategies)

    def _label(self, strategy: str) -> str:
        return f"   {self.subject.name}: {strategy}"

    def _fallback_note(self, index: int) -> str:
        return f" -> falling back to {self.strategies[index]}" if index < len(self.strategies) else ""

    def skip_unavailable(self) -> None:
        """Records the next strategies that cannot run in this environment as unavailable (no
        process started), so the next one that can is the one tried."""
        while not self.done:
            index = self._next
            name = self.strategies[index]
            reason = STRATEGIES[name].unavailable(self.ctx)
            if reason is None:
                return
            self._next += 1
            self.attempts.append(Attempt(strategy=name, status="unavailable", seconds=0.0, reason=reason))
            self.ctx.say(f"{self._label(name)} unavailable ({reason}){self._fallback_note(index + 1)}")

    def prepare_next(self, *, shared: Callable[[str], bool] = lambda s: False) -> Prepared | None:
        """The next strategy's attempt, ready to run (built for a shared process when `shared`
        says so), or None when none is left. A strategy that cannot run here is recorded as
        unavailable and one that cannot even be prepared as failed; the next one is tried."""
        ctx = self.ctx
        while not self.done:
            self.skip_unavailable()
            if self.done:
                break
            index = self._next
            name = self.strategies[index]
            self._next += 1
            strategy = STRATEGIES[name]
            a_dir = self.tmp / "attempts" / f"{index + 1}-{name}"
            a_dir.mkdir(parents=True)
            ta = time.perf_counter()
            try:
                merged_dir = None
                if strategy.merged:
                    merged_dir = ensure_merged(self.subject, ctx.say)
                    self.weights.setdefault("merged", {"path": str(merged_dir), "sha256": _safetensors_hashes(inspect_checkpoint(merged_dir))})
                inv = strategy.build(ctx, self.subject, a_dir, merged_dir, self.include_path, shared=shared(name))
            except Exception as exc:  # a failure to prepare is a failed attempt, not a crash
                attempt = Attempt(strategy=name, status="failed", seconds=round(time.perf_counter() - ta, 2), error_type=type(exc).__name__, error=redact_text(str(exc)), reason=f"could not prepare: {type(exc).__name__}: {exc}"[:300])
                self.attempts.append(attempt)
                ctx.say(f"{self._label(name)} failed ({attempt.reason}){self._fallback_note(index + 1)}")
                continue
            if inv.call is not None:
                (a_dir / "call.json").write_text(json.dumps(inv.call, indent=2, sort_keys=True))
                shutil.copy(RUNNER, a_dir / RUNNER.name)
            return Prepared(name, index, a_dir, inv, ta)
        return None

    def settle(self, p: Prepared, code: int, seconds: float | None = None, note: str = "") -> Attempt:
        """Record how attempt `p` ended (exit `code`; its log is `p.a_dir/lm_eval.log`)."""
        ctx, tmp = self.ctx, self.tmp
        log = p.a_dir / "lm_eval.log"
        log_text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        results = sorted(p.a_dir.rglob("results_*.json"))
        attempt = Attempt(
            strategy=p.strategy, status="ok" if code == 0 and results else "failed",
            seconds=round(seconds if seconds is not None else time.perf_counter() - p.t0, 2),
            command=[_relocate(a, tmp, self.final) for a in p.inv.argv], call=_relocate_obj(p.inv.call, tmp, self.final), exit_code=code,
            log=str(log.relative_to(tmp)), output_dir=str(p.a_dir.relative_to(tmp)),
        )  # fmt: skip
        label, next_note = self._label(p.strategy), self._fallback_note(p.index + 1)
        self.attempts.append(attempt)
        if attempt.status == "failed":
            attempt.error_type, attempt.error, attempt.reason = _classify(code, log_text)
            if code == 0:
                attempt.reason = "lm-eval exited 0 but wrote no results file"
            attempt.log_tail = "\n".join(log_text.splitlines()[-25:])
            if attempt.reason.startswith(DATASET_UNREACHABLE):
                # the data, not the load path, failed: the other strategies would fail the same way
                self.stopped = True
                ctx.say(f"{label} failed ({attempt.reason}); not trying the other strategies")
            else:
                ctx.say(f"{label} failed ({attempt.reason}){next_note}")
            return attempt
        ctx.say(f"{label} ok in {attempt.seconds:.1f}s{note}")
        self.winner = attempt
        return attempt

    def abandon(self) -> None:
        """Drop the record in the making (nothing was tried)."""
        _make_writable_tree(self.tmp)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self) -> EvalOutcome:
        """Seal and commit the record; returns the outcome."""
        ctx, subject, tmp, final, winner, attempts = self.ctx, self.subject, self.tmp, self.final, self.winner, self.attempts
        manifest, setup = ctx.manifest, ctx.setup
        results_files, samples_files, rows = [], {}, []
        if winner:
            out = tmp / winner.output_dir
            results_files = [str(p.relative_to(tmp)) for p in sorted(out.rglob("results_*.json"))]
            for p in sorted(out.rglob("samples_*.jsonl")):
                task = taskdata.from_lm_eval_name(re.sub(r"^samples_(.+)_\d{4}-\d{2}-\d{2}T[\d\-.]+$", r"\1", p.stem))
                samples_files[task] = str(p.relative_to(tmp))
            rows = parse_results(json.loads((tmp / results_files[-1]).read_text()), local_name=taskdata.from_lm_eval_name)
        probe = ctx.env.probe
        hardware = {k: probe.get(k) for k in ("cpu", "cpu_count", "ram_gb", "cuda_available", "cuda_version", "gpus", "platform", "python")}
        where = _where_it_ran()
        if where:
            hardware["executor"] = where
        record = RunRecord(
            hubkit_version=__version__,
            run_id=self.run_id,
            status="ok" if winner else "failed",
            setup=ctx.name,
            subject=subject.name,
            artifact=subject.name if subject.artifact else None,
            repo_id=subject.artifact.repo_id if subject.artifact else None,
            base_model=(subject.artifact.base_model if subject.artifact else None) or subject.base,
            base_model_revision=subject.base_revision,
            strategy=winner.strategy if winner else None,
            fallback_reason="; ".join(f"{a.strategy}: {a.reason}" for a in attempts if a.status != "ok") or None,
            attempts=attempts,
            command=shlex.join(winner.command) if winner and winner.call is None else None,
            call=winner.call if winner else None,
            reproduce=_reproduce(winner, manifest.root) if winner else None,
            cache_key=self.cache_key,
            setup_config=setup.model_dump(mode="json"),
            limit=ctx.limit,
            num_fewshot=setup.num_fewshot,
            tasks=_relocate_obj(ctx.task_facts, tmp, final),
            lm_eval_tasks=dict(zip(setup.tasks, ctx.lm_tasks)),
            lm_eval_version=ctx.env.version("lm_eval"),
            data_overrides=ctx.overrides or None,
            device=ctx.device,
            env=ctx.env.to_record(),
            weights=self.weights,
            hardware=hardware,
            started_at=self.started,
            finished_at=now(),
            duration_s=round(time.perf_counter() - self.t0, 2),
            results_files=results_files,
            samples_files=samples_files,
            rows=rows,
        )
        if ctx.env.lock:
            (tmp / "requirements.lock").write_text(ctx.env.lock)
        # Secrets never reach the record: the record is built from scrubbed parts, and lm-eval's own
        # files are scrubbed too; paths that named the temporary folder name the final one.
        secret_values = list(ctx.secrets.values())
        _scrub_tree(tmp, secret_values, (str(tmp), str(final)))
        record = RunRecord.model_validate_json(redact_text(record.model_dump_json(), secret_values))
        committed = ctx.store.commit(tmp, record)
        return EvalOutcome(subject.name, committed, False, attempts)


def run_subject(ctx: SetupContext, subject: Subject, strategies: list[str], weights: dict, cache_key: str) -> EvalOutcome:
    """Try `strategies` in order for one subject, each in its own process, and write its
    sealed record. Returns the outcome."""
    run = SubjectRun(ctx, SubjectPlan(subject, strategies, weights, cache_key))
    while (p := run.prepare_next()) is not None:
        _run_alone(run, p)
    return run.finish()


def _run_alone(run: SubjectRun, p: Prepared) -> None:
    run.ctx.say(f"{run._label(p.strategy)} ...")
    p.t0 = time.perf_counter()
    code = _run(p.inv.argv, p.a_dir / "lm_eval.log", _child_env(run.ctx.secrets, run.subject.source), run.ctx.manifest.root)
    run.settle(p, code)


def run_subjects(ctx: SetupContext, plans: list[SubjectPlan]) -> list[EvalOutcome]:
    """Run `plans` strategy round by strategy round: in each round, the attempts that may share
    a process (`shareable`) run in one runner process (lm-eval imported and each base loaded
    once), the others one by one. A subject's record is committed as soon as it is settled.
    Returns one outcome per plan, in order (a subject left untried after a data failure has
    none and is left out)."""
    runs = [SubjectRun(ctx, plan) for plan in plans]
    outcomes: dict[int, EvalOutcome] = {}
    try:
        while True:
            for i, r in enumerate(runs):
                if i not in outcomes:
                    r.skip_unavailable()  # so subjects falling back from it still share a process
                    if r.done and r.attempts:  # nothing it could run here: its record says why
                        outcomes[i] = r.finish()
            live = [(i, r) for i, r in enumerate(runs) if i not in outcomes and not r.done]
            if not live:
                break
            wanted = {i: r.strategies[r._next] for i, r in live}
            sharing = [i for i, s in wanted.items() if shareable(ctx, s)]
            share_set = set(sharing) if len(sharing) > 1 else set()  # one subject alone gains nothing
            prepared = {i: r.prepare_next(shared=lambda s, i=i: i in share_set and s == wanted[i]) for i, r in live}
            shared = [(runs[i], p) for i, p in prepared.items() if p is not None and i in share_set and p.inv.call is not None and p.strategy == wanted[i]]
            alone = [(runs[i], p) for i, p in prepared.items() if p is not None and (runs[i], p) not in shared]
            if len(shared) == 1:  # its partners could not even be prepared: it runs as prepared, alone
                alone.insert(0, shared.pop())
            if shared:
                _run_shared(ctx, shared)
            for run, p in alone:
                if any(r.stopped for r in runs):
                    break
                _run_alone(run, p)
            for i, run in enumerate(runs):
                if i not in outcomes and run.done and run.attempts:
                    outcomes[i] = run.finish()
            if any(r.stopped for r in runs):
                break
    finally:
        for i, run in enumerate(runs):
            if i not in outcomes:
                if run.attempts and any(r.stopped for r in runs):
                    outcomes[i] = run.finish()
                else:
                    run.abandon()
    return [outcomes[i] for i in sorted(outcomes)]


def _run_shared(ctx: SetupContext, pairs: list[tuple[SubjectRun, Prepared]]) -> None:
    """One runner process for several subjects' attempts; a subject whose attempt the process
    did not reach (it died first) runs in a fresh one."""
    names = ", ".join(f"{r.subject.name} ({p.strategy})" for r, p in pairs)
    ctx.say(f"   {names}: in one process ...")
    source = next((r.subject.source for r, _ in pairs if r.subject.source is not None), None)
    scratch = Path(tempfile.mkdtemp(prefix="hubkit-shared-"))
    try:
        pending = list(pairs)
        rounds = 0
        while pending:
            rounds += 1
            entries = []
            for k, (run, p) in enumerate(pending):
                call = dict(p.inv.call)
                call["ran_with"] = [r.subject.name for r, _ in pairs if r is not run]
                (p.a_dir / "call.json").write_text(json.dumps(call, indent=2, sort_keys=True))
                p.inv.call = call
                entries.append({"call": call, "log": str(p.a_dir / "lm_eval.log"), "status": str(scratch / f"{rounds}-{k}.json")})
            plan = scratch / f"plan-{rounds}.json"
            plan.write_text(json.dumps({"subjects": entries}, indent=2))
            process_log = scratch / f"process-{rounds}.log"
            code = _run([ctx.env.python, str(RUNNER), str(plan)], process_log, _child_env(ctx.secrets, source), ctx.manifest.root)
            tail = "\n".join(process_log.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
            untouched = []
            for (run, p), entry in zip(pending, entries):
                try:
                    state = json.loads(Path(entry["status"]).read_text())
                except (OSError, ValueError):
                    state = {}
                if state.get("state") in ("ok", "failed"):
                    run.settle(p, int(state.get("exit_code", 1)), state.get("seconds"), note=" (shared process)")
                elif state.get("state") in ("loading", "running"):
                    # the process died on this subject (a crash, or killed for lack of memory)
                    _append(p.a_dir / "lm_eval.log", f"[hubkit] the shared process exited {code} during this subject; its last lines:\n{tail}")
                    run.settle(p, code or 1)
                else:
                    untouched.append((run, p))
            if len(untouched) == len(pending):
                # the process died before any subject started: each fails with what it said
                for run, p in untouched:
                    _append(p.a_dir / "lm_eval.log", f"[hubkit] the shared process exited {code} before this subject started:\n{tail}")
                    run.settle(p, code or 1)
                untouched = []
            pending = untouched
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\n" + text + "\n")


def _where_it_ran() -> dict | None:
    """The scheduler job this process runs in (Slurm, HF Jobs), with its log files: kept in the record."""
    if os.environ.get("SLURM_JOB_ID"):
        out = {"kind": "slurm", "job_id": os.environ.get("SLURM_ARRAY_JOB_ID", os.environ["SLURM_JOB_ID"]), "node": os.environ.get("SLURMD_NODENAME")}
        if os.environ.get("SLURM_ARRAY_TASK_ID"):
            out["job_id"] = f"{out['job_id']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
        try:  # submitit's job wrapper knows its own log files
            import submitit

            paths = submitit.JobEnvironment().paths
            out["stdout"], out["stderr"] = str(paths.stdout), str(paths.stderr)
        except Exception:  # noqa: BLE001 - a job not started by submitit, or another version
            pass
        return out
    if os.environ.get("HUBKIT_SCALEOUT_PARENT") and os.environ.get("HUBKIT_UNIT_ID"):
        # a unit of the local GPU pool: which devices it was lent
        return {"kind": "local", "unit": os.environ["HUBKIT_UNIT_ID"], "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
    if os.environ.get("HUBKIT_HF_JOB"):
        return {"kind": "hf-jobs", "unit": os.environ.get("HUBKIT_UNIT_ID"), "job_id": os.environ.get("JOB_ID") or None}
    return None


def _make_writable_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        if p.exists() and not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o200)


def _relocate(text: str, tmp: Path, final: Path) -> str:
    return text.replace(str(tmp), str(final))


def _relocate_obj(obj, tmp: Path, final: Path):
    if obj is None:
        return None
    return json.loads(_relocate(json.dumps(obj), tmp, final))


def _reproduce(winner: Attempt, root: Path) -> str:
    """A shell line that reruns the attempt by hand (output to a fresh folder)."""
    argv = list(winner.command or [])
    if winner.call is not None:
        return f"cd {shlex.quote(str(root))} && HF_HUB_OFFLINE=1 {shlex.join([*argv, 'reproduced'])}"
    if "--output_path" in argv:
        argv[argv.index("--output_path") + 1] = "reproduced"
    return f"cd {shlex.quote(str(root))} && HF_HUB_OFFLINE=1 {shlex.join(argv)}"


def _scrub_tree(root: Path, secrets: list[str], move: tuple[str, str]) -> None:
    """Redact secrets from every text file of a record being made, and point paths that name
    its temporary folder at its final one."""
    old, new = move
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".jsonl", ".log", ".txt", ".lock", ".yaml"):
            text = p.read_text(encoding="utf-8", errors="replace")
            clean = redact_text(text, secrets).replace(old, new)
            if clean != text:
                p.write_text(clean, encoding="utf-8")
