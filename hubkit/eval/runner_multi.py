"""Run inside an eval environment: lm-eval on several subjects of one eval setup in one process.

lm-eval (and torch, transformers, peft) are imported once, its task index is built once, and
each base model is loaded once: the bare base is evaluated first, then every adapter in turn on
that same base (peft `load_adapter` / `set_adapter`), the previous one deleted. A vLLM engine
started with LoRA enabled serves each adapter in turn the same way (`vllm-lora`). Merged
checkpoints are loaded one at a time. The output files are lm-eval's own (results JSON and
per-sample JSONL, written by its EvaluationTracker as the CLI writes them), one folder per
subject.

A subject that fails (an exception while it is evaluated) ends only its own attempt: the error
goes to its log and status file, and the next subject runs. A base that fails to load fails the
subjects that needed it.

Usage:
    python runner_multi.py CALL.json [OUTPUT_DIR]   one subject's call, as a run record keeps it
                                                    (OUTPUT_DIR overrides the call's output_path)
    python runner_multi.py PLAN.json                {"subjects": [{"call", "log", "status"}, ...]}

hubkit copies this file and each subject's call into its run record, so the record reruns by hand.
"""

import contextlib
import gc
import hashlib
import inspect
import json
import os
import sys
import time
import traceback

# HFLM arguments that only mean something when lm-eval loads the model itself from a name.
LOAD_ONLY = {
    "pretrained", "backend", "revision", "subfolder", "tokenizer", "device", "dtype", "batch_size",
    "parallelize", "max_memory_per_gpu", "max_cpu_memory", "offload_folder", "tp_plan", "peft",
    "delta", "autogptq", "gptqmodel", "gguf_file", "trust_remote_code", "add_bos_token",
}  # fmt: skip


def main(spec_path, output_path=None):
    with open(spec_path) as fh:
        spec = json.load(fh)
    if "subjects" in spec:
        entries = spec["subjects"]
        return run(entries, raise_errors=False)
    if output_path:
        spec["output_path"] = output_path
    return run([{"call": spec}], raise_errors=True)


# -- bookkeeping --------------------------------------------------------------------------------


def _write_status(entry, **fields):
    path = entry.get("status")
    if not path:
        return
    state = dict(entry.setdefault("_state", {}))
    state.update(fields)
    entry["_state"] = state
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(state, fh)
    os.replace(tmp, path)


@contextlib.contextmanager
def _captured(path):
    """Send this process's stdout and stderr (file descriptors, so C libraries too) to `path`."""
    if not path:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def _fail(entry, exc_text, raise_errors):
    if raise_errors:
        raise
    if entry.get("log"):
        with open(entry["log"], "a") as fh:
            fh.write(exc_text)
    _write_status(entry, state="failed", exit_code=1, ended=time.time())


# -- loading ------------------------------------------------------------------------------------


def _dtype(name):
    import torch

    if name in (None, "auto"):
        return "auto"
    return getattr(torch, name) if isinstance(name, str) else name


def _dtype_kwarg():
    # transformers renamed torch_dtype to dtype in 4.56 (lm-eval makes the same choice).
    import transformers

    major, minor = (int(p) for p in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _hflm_params():
    from lm_eval.models.huggingface import HFLM

    return set(inspect.signature(HFLM.__init__).parameters) - {"self", "kwargs"}


def _split_extra(call):
    """(HFLM keyword arguments, from_pretrained keyword arguments) from the call's extra model_args,
    split the way lm-eval's CLI splits them: what HFLM names is its own, the rest loads the model."""
    extra = dict(call.get("model_kwargs") or {})
    params = _hflm_params()
    hflm = {k: v for k, v in extra.items() if k in params and k not in LOAD_ONLY}
    load = {k: v for k, v in extra.items() if k not in params}
    return hflm, load


def _load_hf(call):
    """The base (or merged) model as lm-eval's HFLM would load it from its name."""
    import torch
    from transformers import AutoModelForCausalLM

    _, load = _split_extra(call)
    kwargs = {_dtype_kwarg(): _dtype(call.get("dtype")), "trust_remote_code": bool(call.get("trust_remote_code"))}
    device = call.get("device") or "cpu"
    if call.get("quantize") == "4bit":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=call["bnb_4bit_quant_type"],
            bnb_4bit_use_double_quant=call["bnb_4bit_use_double_quant"],
            bnb_4bit_compute_dtype=getattr(torch, call["bnb_4bit_compute_dtype"]),
        )
        kwargs["device_map"] = "cpu" if device == "cpu" else {"": device}
    model = AutoModelForCausalLM.from_pretrained(call["pretrained"], revision=call.get("revision") or "main", **kwargs, **load)
    if call.get("quantize") != "4bit" and device != "cpu":
        model.to(device)  # what HFLM does after loading on one device
    model.eval()
    return model


def _vocab_size(model):
    config = model.config
    text = getattr(config, "text_config", None)
    return text.vocab_size if text is not None and hasattr(text, "vocab_size") else config.vocab_size


def _tokenizer_len(call):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(call["tokenizer"], revision=call.get("revision") or "main", trust_remote_code=bool(call.get("trust_remote_code")))
    return len(tok)


def _group_key(call):
    """Subjects with equal keys share one loaded base (or engine)."""
    strategy = call.get("strategy")
    if strategy == "vllm-lora":
        fields = ("pretrained", "revision", "dtype", "tokenizer", "trust_remote_code", "vllm_kwargs", "max_lora_rank")
        return json.dumps(["vllm", *[call.get(f) for f in fields]], sort_keys=True, default=str)
    fields = ("pretrained", "revision", "dtype", "trust_remote_code", "device", "quantize", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype", "bnb_4bit_use_double_quant")
    _, load = _split_extra(call) if "model_kwargs" in call else ({}, {})
    return json.dumps(["hf", *[call.get(f) for f in fields], load], sort_keys=True, default=str)


def _groups(entries):
    """Entries grouped by the base they load, first-come order; bare bases before adapters."""
    order, groups = [], {}
    for entry in entries:
        key = _group_key(entry["call"])
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(entry)
    return [sorted(groups[k], key=lambda e: bool(e["call"].get("peft"))) for k in order]


# -- evaluating ---------------------------------------------------------------------------------


class _TaskManagers:
    """One lm-eval task index per distinct include folder content (each subject's record has its
    own copy of the generated task configs; equal copies share one index)."""

    def __init__(self):
        self._cache = {}

    def get(self, call):
        from lm_eval.tasks import TaskManager

        include = call.get("include_path")
        key = (self._digest(include), bool(call.get("include_defaults", True)))
        if key not in self._cache:
            self._cache[key] = TaskManager(include_path=include, include_defaults=bool(call.get("include_defaults", True)))
        return self._cache[key]

    @staticmethod
    def _digest(folder):
        if not folder:
            return None
        h = hashlib.sha256()
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                p = os.path.join(root, name)
                h.update(os.path.relpath(p, folder).encode() + b"\0")
                with open(p, "rb") as fh:
                    h.update(fh.read())
        return h.hexdigest()


def _evaluate(lm, call, task_managers):
    import lm_eval
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=call["output_path"])
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=call["tasks"],
        num_fewshot=call.get("num_fewshot"),
        limit=call.get("limit"),
        gen_kwargs=call.get("gen_kwargs"),
        task_manager=task_managers.get(call),
        log_samples=True,
        evaluation_tracker=tracker,
    )  # lm-eval's default seeds, the same the CLI uses, reset by every call
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task in results["configs"]:
        tracker.save_results_samples(task_name=task, samples=samples[task])


def _hflm(model, call):
    from lm_eval.models.huggingface import HFLM

    hflm_kwargs, _ = _split_extra(call)
    return HFLM(
        pretrained=model,
        tokenizer=call["tokenizer"],  # a name: HFLM loads it exactly as the CLI does
        revision=call.get("revision") or "main",
        trust_remote_code=bool(call.get("trust_remote_code")),
        add_bos_token=call.get("add_bos_token"),
        batch_size=call["batch_size"],
        **hflm_kwargs,
    )


def _run_hf_group(group, task_managers, raise_errors):
    from peft import PeftModel

    first = group[0]["call"]
    for entry in group:
        _write_status(entry, state="loading", started=time.time())
    try:
        model = _load_hf(first)
    except Exception:  # noqa: BLE001 - a base that cannot load fails the subjects that need it
        text = traceback.format_exc()
        for entry in group:
            with _captured(entry.get("log")):
                print(f"loading {first['pretrained']} failed:", file=sys.stderr)
            _fail(entry, text, raise_errors)
        return
    peft_model, current = None, None
    vocab = _vocab_size(model)
    for i, entry in enumerate(group):
        call = entry["call"]
        t0 = time.time()
        _write_status(entry, state="running", started=t0)
        with _captured(entry.get("log")):
            try:
                if not call.get("peft"):  # bare bases come first, before any resize or adapter
                    lm = _hflm(model, call)
                else:
                    # lm-eval resizes the embeddings to the tokenizer's length before attaching an
                    # adapter (added tokens; or a padded vocabulary, which it shrinks): the shared
                    # base is resized once for the adapters that agree; one that does not gets
                    # a base of its own.
                    n = _tokenizer_len(call)
                    if peft_model is None and n != vocab:
                        model.resize_token_embeddings(n)
                        vocab = n
                    if n != vocab:
                        own = _load_hf(call)
                        own.resize_token_embeddings(n)
                        target = PeftModel.from_pretrained(own, call["peft"], revision=call.get("revision") or "main")
                    else:
                        name = f"subject{i}"
                        if peft_model is None:
                            peft_model = PeftModel.from_pretrained(model, call["peft"], adapter_name=name, revision=call.get("revision") or "main")
                        else:
                            peft_model.load_adapter(call["peft"], adapter_name=name)
                            peft_model.set_adapter(name)
                            if current is not None and hasattr(peft_model, "delete_adapter"):
                                peft_model.delete_adapter(current)
                        current = name
                        target = peft_model
                    target.eval()
                    lm = _hflm(target, call)
                _evaluate(lm, call, task_managers)
                del lm
            except Exception:  # noqa: BLE001 - this subject's attempt fails, the next one runs
                text = traceback.format_exc()
                print(text, file=sys.stderr)
                if raise_errors:
                    raise
                _write_status(entry, state="failed", exit_code=1, ended=time.time(), seconds=round(time.time() - t0, 2))
                _free()
                continue
        _write_status(entry, state="ok", exit_code=0, ended=time.time(), seconds=round(time.time() - t0, 2))
    del model, peft_model
    _free()


def _run_vllm_group(group, task_managers, raise_errors):
    """One vLLM engine with LoRA enabled; each adapter is a LoRARequest of its own in turn."""
    first = group[0]["call"]
    for entry in group:
        _write_status(entry, state="loading", started=time.time())
    try:
        from lm_eval.models.vllm_causallms import VLLM
        from vllm.lora.request import LoRARequest

        lm = VLLM(
            pretrained=first["pretrained"], revision=first.get("revision"), dtype=first.get("dtype") or "auto",
            tokenizer=first.get("tokenizer"), trust_remote_code=bool(first.get("trust_remote_code")),
            add_bos_token=first.get("add_bos_token"), batch_size=first["batch_size"],
            lora_local_path=first["peft"], max_lora_rank=int(first.get("max_lora_rank") or 16),
            **(first.get("vllm_kwargs") or {}),
        )  # fmt: skip
    except Exception:  # noqa: BLE001
        text = traceback.format_exc()
        for entry in group:
            _fail(entry, text, raise_errors)
        return
    for i, entry in enumerate(group, 1):
        call = entry["call"]
        t0 = time.time()
        _write_status(entry, state="running", started=t0)
        with _captured(entry.get("log")):
            try:
                lm.lora_request = LoRARequest(f"subject{i}", i, call["peft"])
                _evaluate(lm, call, task_managers)
            except Exception:  # noqa: BLE001
                text = traceback.format_exc()
                print(text, file=sys.stderr)
                if raise_errors:
                    raise
                _write_status(entry, state="failed", exit_code=1, ended=time.time(), seconds=round(time.time() - t0, 2))
                continue
        _write_status(entry, state="ok", exit_code=0, ended=time.time(), seconds=round(time.time() - t0, 2))
    del lm
    _free()


def _free():
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - freeing memory is best effort
        pass


def _describe_environment_once():
    """lm-eval describes the environment in every results file with torch's collect_env, which
    runs pip and nvidia-smi (seconds, each time). The environment of one process does not change
    between its subjects: describe it once, every results file still carries the description."""
    try:
        import functools

        import torch.utils.collect_env as collect_env
    except Exception:  # noqa: BLE001 - lm-eval then reports the error text itself, as it would
        return
    if not hasattr(collect_env.get_pretty_env_info, "cache_info"):
        collect_env.get_pretty_env_info = functools.lru_cache(maxsize=1)(collect_env.get_pretty_env_info)


def run(entries, raise_errors=False):
    """Evaluates every entry; returns 0 (each entry's outcome is in its status file)."""
    for entry in entries:
        _write_status(entry, state="queued")
    import lm_eval  # noqa: F401 - imported once, before any subject's timer starts

    _describe_environment_once()
    task_managers = _TaskManagers()
    for group in _groups(entries):
        if group[0]["call"].get("strategy") == "vllm-lora":
            _run_vllm_group(group, task_managers, raise_errors)
        else:
            _run_hf_group(group, task_managers, raise_errors)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
