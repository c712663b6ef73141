"""Facts read from an artifact's files (or its facts JSON), as the specs table shows them.

A row is there only when its fact is known: a facts file written by hand may give a handful of
fields, and a card shows those, says they were stated by the author, and leaves the rest out.
"""

from __future__ import annotations

from ..errors import CardError, InspectError
from ..manifest import Artifact, Manifest
from .numbers import fmt, human


def artifact_facts(manifest: Manifest, art: Artifact) -> dict | None:
    """Facts read from the artifact's files; from its `facts` JSON (written by `hubkit inspect
    --json`, or by hand) when the files are not there (e.g. an example without weights).

    The dict carries `provenance`: {"source": "files"} when read now, else "inspect" or "author"
    with the facts file as the manifest names it. Raises CardError (one line per problem, naming
    the facts file and the field) when the facts file is missing, not JSON or breaks its schema.
    """
    from ..inspection import inspect_path, load_facts_file

    path = manifest.resolve(art.path)
    facts = None
    if path is not None and (path.is_dir() or (path.is_file() and path.suffix == ".gguf")):
        try:
            facts = inspect_path(path, hash_files=False).to_dict()  # a card shows no hashes: do not re-read weights
            facts["provenance"] = {"source": "files", "file": None, "by": None}
        except InspectError:
            facts = None
    if facts is None and art.facts:
        try:
            facts = load_facts_file(manifest.resolve(art.facts), shown_as=art.facts)
        except InspectError as exc:
            raise CardError(str(exc), hint=exc.hint, path=exc.path) from None
    if facts is None:
        return None
    base_params = facts.get("base_params")
    if base_params is None and art.base_model_path:
        try:
            base_params = inspect_path(manifest.resolve(art.base_model_path), hash_files=False).to_dict().get("params")
        except InspectError:
            base_params = None
        facts["base_params_approximate"] = False
    facts["base_params"] = base_params
    return facts


def count(n: int | None, approximate: bool = False) -> str:
    """A parameter count: exact with its short form, or 'about 7.00 B' when an author rounded it."""
    if n is None:
        return ""
    if approximate:
        return f"about {human(n)}"
    return f"{n:,} ({human(n)})" if human(n) != str(n) else f"{n:,}"


def _adapter_rows(facts: dict) -> list[list[str]]:
    targets = facts.get("module_types") or facts.get("target_modules") or []
    rows = [["PEFT type", facts.get("peft_type") or "LORA"], ["rank r", fmt(facts["r"])]]
    scaling = facts.get("scaling")
    rslora = facts.get("use_rslora")
    rows.append(["alpha", fmt(facts["lora_alpha"]) + (f" (scaling {fmt(scaling)}{' = α/√r, rslora' if rslora else ' = α/r'})" if scaling is not None else "")])
    if facts.get("lora_dropout") is not None:
        rows.append(["dropout", fmt(facts["lora_dropout"])])
    if targets:
        rows.append(["target modules", ", ".join(targets) + f" ({len(targets)} types)"])
    if facts.get("adapted_modules") is not None:
        rows.append(["adapted modules", fmt(facts["adapted_modules"])])
    trainable = facts.get("trainable_params")
    if trainable is not None:
        text = f"{trainable:,} ({human(trainable)})"
        if facts.get("base_params"):
            about = "about " if facts.get("base_params_approximate") else ""
            text += f", {100 * trainable / facts['base_params']:.3f} % of the {about}{human(facts['base_params'])} base"
        rows.append(["trainable parameters", text])
    if facts.get("dtypes"):
        rows.append(["weights dtype", ", ".join(facts["dtypes"])])
    if facts.get("use_dora"):
        rows.append(["DoRA", "yes"])
    if facts.get("modules_to_save"):
        rows.append(["modules saved whole", ", ".join(facts["modules_to_save"])])
    if facts.get("peft_version"):
        rows.append(["peft version", facts["peft_version"]])
    return rows


def _checkpoint_rows(facts: dict) -> list[list[str]]:
    rows = []
    if facts.get("architectures") or facts.get("model_type"):
        rows.append(["architecture", ", ".join(facts.get("architectures") or []) or facts["model_type"]])
    if facts.get("params") is not None:
        rows.append(["parameters", count(facts["params"], facts.get("params_approximate", False))])
    if facts.get("dtypes"):
        rows.append(["weights dtype", ", ".join(facts["dtypes"])])
    quant = facts.get("quantization") or {}
    if quant.get("quant_method"):
        details = []
        if quant.get("bits"):
            details.append(f"{quant['bits']}-bit")
        if quant.get("group_size"):
            details.append(f"group size {quant['group_size']}")
        rows.append(["quantization", str(quant["quant_method"]) + (f" ({', '.join(details)})" if details else "")])
    if facts.get("shards"):
        rows.append(["shards", fmt(len(facts["shards"]))])
    merge = facts.get("merge_record")
    if merge:
        rows.append(["merged by", f"hubkit {merge.get('hubkit_version')} ({merge.get('method')})"])
        digest = ((merge.get("adapter") or {}).get("sha256") or {}).get("adapter_model.safetensors")
        if digest:
            rows.append(["adapter sha256", digest])
    return rows


def _gguf_rows(facts: dict) -> list[list[str]]:
    models = facts.get("models") or []
    rows = []
    if facts.get("architecture"):
        rows.append(["architecture", f"{facts['architecture']} (GGUF)"])
    if facts.get("params") is not None:
        rows.append(["parameters", count(facts["params"], facts.get("params_approximate", False))])
    if facts.get("context_length"):
        rows.append(["context length", f"{facts['context_length']:,} tokens"])
    n_parts = sum(len(m.get("parts") or [m["path"]]) for m in models)
    rows.append(["files", f"{len(models)} GGUF model file{'s' if len(models) != 1 else ''}" + (f" ({n_parts} files with the split parts)" if n_parts != len(models) else "")])
    known = [m.get("has_tokenizer") for m in models]
    if known and all(k is not None for k in known):
        if all(known):
            rows.append(["tokenizer", "in every file"])
        elif any(known):
            rows.append(["tokenizer", f"in {sum(map(bool, known))} of {len(known)} files"])
        else:
            rows.append(["tokenizer", "not in the files"])
    chat = [m.get("has_chat_template") for m in models]
    if chat and all(c is not None for c in chat):
        rows.append(["chat template", "in every file" if all(chat) else (f"in {sum(map(bool, chat))} of {len(chat)} files" if any(chat) else "none")])
    return rows


def specs_rows(facts: dict) -> list[list[str]]:
    """The specs table: one [label, value] row for each fact that is known."""
    kind = facts.get("kind")
    if kind == "adapter":
        return _adapter_rows(facts)
    if kind == "gguf":
        return _gguf_rows(facts)
    return _checkpoint_rows(facts)
