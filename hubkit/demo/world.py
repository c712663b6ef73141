"""The offline demo world: everything hubkit's pipeline needs, built in code, no network.

What it builds (in well under a minute on 2 CPU cores):
- a byte-level BPE tokenizer trained with `tokenizers` on the demo corpus;
- a tiny Mistral-architecture base, briefly pretrained so that it knows the question format
  (it answers with a colour when asked for a colour) but not the facts, so it scores at chance;
- two LoRA adapters (r=16, alpha=32, all linear projections, like seed 000) trained on a
  synthetic fact-recall task in the ARC schema: `lora-full` learns every fact, `lora-half` only
  the facts about half of the entities, so both beat the base and differ from each other;
- that task's data as ARC-format JSONL and an lm-eval task config in the style of
  `arc_challenge` (`Question: ...\\nAnswer:`, acc and acc_norm);
- a `hubkit.yaml` describing it all.

The task measures recall of facts the adapters were trained on (the test split asks about the
same facts with fresh distractors): it shows that an adapter learned, not that it generalizes.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..templating import render_template

WORLD_VERSION = 6
TASK_NAME = "hubkit_demo_arc"
BASE_MODEL_ID = "hubkit-demo/tiny-mistral"
ADAPTERS = {
    # name -> (fraction of entities whose facts it learns, seed)
    "lora-full": (1.0, 1),
    "lora-half": (0.5, 2),
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

_SYLLABLES = ["ka", "lo", "mi", "ren", "tu", "vax", "zor", "bel", "qui", "dra", "fen", "po", "sil", "gan", "tor", "wy"]
RELATIONS = {
    "color": ("What is the colour of the flag of {e}?", ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]),
    "animal": ("Which animal lives in the palace of {e}?", ["cat", "horse", "owl", "fox", "bear", "wolf", "goat", "eagle"]),
}
N_ENTITIES = 40
# Tuned so lora-full recalls (nearly) every fact (acc 0.95-1.0, depending on the CPU's float
# kernels) and lora-half about half of them (~0.6). Whole-set batches: on a model this small a
# step costs about the same at 16 rows as at 80, so fewer, larger steps train 2-3x faster.
ADAPTER_STEPS = 200
ADAPTER_BATCH = 80
ADAPTER_LR = 5e-3


@dataclass
class WorldPaths:
    root: Path
    base: Path
    adapters: dict[str, Path]
    data: Path
    tasks: Path
    manifest: Path
    info: Path


@dataclass
class World:
    paths: WorldPaths
    info: dict = field(default_factory=dict)


def world_paths(root: str | Path) -> WorldPaths:
    root = Path(root)
    return WorldPaths(
        root=root,
        base=root / "base",
        adapters={name: root / "adapters" / name for name in ADAPTERS},
        data=root / "data",
        tasks=root / "tasks",
        manifest=root / "hubkit.yaml",
        info=root / "world.json",
    )


# -- data ----------------------------------------------------------------------------------


def _entities(rng: random.Random) -> list[str]:
    names: set[str] = set()
    while len(names) < N_ENTITIES:
        names.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).capitalize())
    return sorted(names)


def make_facts(seed: int = 0) -> list[dict]:
    """Every (entity, relation, answer) fact of the demo world, deterministic for a seed."""
    rng = random.Random(seed)
    facts = []
    for ent in _entities(rng):
        for rel, (template, values) in RELATIONS.items():
            facts.append({"entity": ent, "relation": rel, "question": template.format(e=ent), "answer": rng.choice(values)})
    return facts


def _arc_row(fact: dict, row_id: str, rng: random.Random) -> dict:
    values = RELATIONS[fact["relation"]][1]
    distractors = rng.sample([v for v in values if v != fact["answer"]], 3)
    options = distractors + [fact["answer"]]
    rng.shuffle(options)
    labels = ["A", "B", "C", "D"]
    return {
        "id": row_id,
        "question": fact["question"],
        "choices": {"text": options, "label": labels},
        "answerKey": labels[options.index(fact["answer"])],
    }


def make_splits(facts: list[dict], seed: int = 0) -> dict[str, list[dict]]:
    """ARC-schema rows. train: every fact; validation: a sample; test: every fact, fresh distractors."""
    rng = random.Random(seed + 1)
    train = [_arc_row(f, f"demo-train-{i:04d}", rng) for i, f in enumerate(facts)]
    test = [_arc_row(f, f"demo-test-{i:04d}", rng) for i, f in enumerate(facts)]
    val_idx = sorted(rng.sample(range(len(facts)), 16))
    validation = [_arc_row(facts[i], f"demo-val-{i:04d}", rng) for i in val_idx]
    return {"train": train, "validation": validation, "test": test}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


# -- tokenizer and models ------------------------------------------------------------------


def build_tokenizer(corpus: list[str], out: Path):
    """A byte-level BPE tokenizer trained on the corpus, saved so old transformers can load it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.save_pretrained(out)
    # transformers 5 records its own backend class name, which transformers 4.x cannot load;
    # the generic fast class loads everywhere (old pinned eval environments included).
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return fast


def _prompt(question: str) -> str:
    return f"Question: {question}\nAnswer:"


def _batches(tokenizer, pairs: list[tuple[str, str]], batch_size: int, rng: random.Random):
    """Endless shuffled batches of (input_ids, attention_mask, labels); loss on the answer only."""
    import torch

    encoded = []
    for prompt, answer in pairs:
        p = tokenizer(prompt)["input_ids"]
        a = tokenizer(" " + answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        encoded.append((p + a, [-100] * len(p) + a))
    while True:
        rng.shuffle(encoded)
        for i in range(0, len(encoded) - batch_size + 1, batch_size):
            chunk = encoded[i : i + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), tokenizer.pad_token_id)
            labels = torch.full((len(chunk), width), -100)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (x, y) in enumerate(chunk):
                ids[row, : len(x)] = torch.tensor(x)
                labels[row, : len(y)] = torch.tensor(y)
                mask[row, : len(x)] = 1
            yield ids, mask, labels


def _train(model, params, batches, steps: int, lr: float) -> float:
    import torch

    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / steps))
    model.train()
    loss = None
    for _ in range(steps):
        ids, mask, labels = next(batches)
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss = float(out.loss.detach())
    model.eval()
    return loss


def build_base(tokenizer, facts: list[dict], out: Path, *, steps: int = 150, seed: int = 0) -> dict:
    """A tiny Mistral, pretrained on the question format with *random* answers of the right kind."""
    import torch
    from transformers import GenerationConfig, MistralConfig, MistralForCausalLM

    torch.manual_seed(seed)
    config = MistralConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        sliding_window=None,
    )
    model = MistralForCausalLM(config)
    rng = random.Random(seed + 7)
    # Each pass draws a fresh random answer per question, so no fact can be learned: the base
    # learns "a colour question gets a colour" and stays at chance on the task.
    pairs = [(_prompt(f["question"]), rng.choice(RELATIONS[f["relation"]][1])) for f in facts for _ in range(4)]
    loss = _train(model, list(model.parameters()), _batches(tokenizer, pairs, 32, rng), steps, 3e-3)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(out)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out)
    return {"steps": steps, "final_loss": round(loss, 4), "params": sum(p.numel() for p in model.parameters())}


def _portable_tokenizer_config(out: Path) -> None:
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def train_adapter(base_dir: Path, tokenizer, rows: list[dict], out: Path, *, steps: int, seed: int) -> dict:
    """Train one LoRA adapter (r=16, alpha=32, all linear projections) on ARC-format rows."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=LORA_TARGETS, task_type="CAUSAL_LM", bias="none"
    )
    model = get_peft_model(base, config)
    trainable, total = model.get_nb_trainable_parameters()
    pairs = [(_prompt(r["question"]), r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])]) for r in rows]
    rng = random.Random(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    loss = _train(model, params, _batches(tokenizer, pairs, min(ADAPTER_BATCH, len(pairs)), rng), steps, ADAPTER_LR)
    # Record the Hub id users would see, not the local path the demo loaded from.
    model.peft_config["default"].base_model_name_or_path = BASE_MODEL_ID
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    _portable_tokenizer_config(out)
    return {
        "steps": steps,
        "final_loss": round(loss, 4),
        "train_rows": len(rows),
        "batch_size": min(ADAPTER_BATCH, len(pairs)),
        "trainable_params": trainable,
        "total_params": total,
        "seed": seed,
    }


def task_config(data_dir: Path) -> str:
    return render_template(
        "demo/task.yaml.j2",
        task=TASK_NAME,
        train=str((data_dir / "train.jsonl").resolve()),
        validation=str((data_dir / "validation.jsonl").resolve()),
        test=str((data_dir / "test.jsonl").resolve()),
    )


def build_world(root: str | Path, *, force: bool = False, progress=None) -> World:
    """Build the demo world under `root` (reused when already built at this version).

    `progress(msg)` is called with a line per step. Returns the World with paths and the
    training facts (losses, steps, trainable parameters).
    """
    say = progress or (lambda msg: None)
    paths = world_paths(root)
    if paths.info.is_file() and not force:
        info = json.loads(paths.info.read_text())
        if info.get("version") == WORLD_VERSION and paths.manifest.is_file():
            say(f"demo world already built at {paths.root}")
            return World(paths, info)
    if paths.root.exists():
        for sub in ("base", "adapters", "data", "tasks", "hubkit.yaml", "world.json"):
            p = paths.root / sub
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    paths.root.mkdir(parents=True, exist_ok=True)

    from .._quiet import quiet_ml_libraries

    quiet_ml_libraries()
    import torch

    # One thread: on a model this small a second one gains little, and on a busy machine
    # oversubscribed intra-op threads make training many times slower.
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    facts = make_facts()
    splits = make_splits(facts)
    for split, rows in splits.items():
        _write_jsonl(paths.data / f"{split}.jsonl", rows)
    paths.tasks.mkdir(parents=True, exist_ok=True)
    (paths.tasks / f"{TASK_NAME}.yaml").write_text(task_config(paths.data))
    say(f"data: {', '.join(f'{k} {len(v)} rows' for k, v in splits.items())} -> {paths.data}")

    corpus = [_prompt(f["question"]) + " " + " ".join(RELATIONS[f["relation"]][1]) for f in facts]
    tokenizer = build_tokenizer(corpus, paths.base)
    say(f"tokenizer: byte-level BPE, {len(tokenizer)} tokens")
    base_info = build_base(tokenizer, facts, paths.base)
    say(f"base: tiny Mistral, {base_info['params']:,} params, pretrained {base_info['steps']} steps -> {paths.base}")

    entities = sorted({f["entity"] for f in facts})
    adapters_info = {}
    for name, (fraction, seed) in ADAPTERS.items():
        known = set(entities[: int(len(entities) * fraction)])
        rows = [r for r, f in zip(splits["train"], facts) if f["entity"] in known]
        adapters_info[name] = train_adapter(paths.base, tokenizer, rows, paths.adapters[name], steps=ADAPTER_STEPS, seed=seed)
        adapters_info[name]["entities_known"] = len(known)
        say(f"adapter {name}: trained on {len(rows)} rows, {adapters_info[name]['steps']} steps -> {paths.adapters[name]}")

    info = {
        "version": WORLD_VERSION,
        "task": TASK_NAME,
        "base": base_info,
        "adapters": adapters_info,
        "rows": {k: len(v) for k, v in splits.items()},
        "build_seconds": round(time.perf_counter() - t0, 1),
    }
    # Space examples: a fact both adapters learned, and one only lora-full learned.
    prompts = [_prompt(next(f["question"] for f in facts if f["entity"] == e)) for e in (entities[0], entities[-1])]
    paths.manifest.write_text(
        render_template("demo/hubkit.yaml.j2", info=info, base_model=BASE_MODEL_ID, task=TASK_NAME, targets=LORA_TARGETS, adapter_lr=ADAPTER_LR, prompts=prompts)
    )
    paths.info.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    say(f"manifest: {paths.manifest}")
    return World(paths, info)


def world_fingerprint() -> str:
    """What a built world depends on: this module, the demo templates, the ML libraries' versions
    and the machine kind (floats differ between CPUs). Same fingerprint, same world."""
    import hashlib
    import platform
    from importlib import metadata

    from ..templating import builtin_template_dir

    h = hashlib.sha256(Path(__file__).read_bytes())
    for f in sorted((builtin_template_dir() / "demo").glob("*.j2")):
        h.update(f.read_bytes())
    for dist in ("torch", "transformers", "peft", "tokenizers", "safetensors"):
        try:
            h.update(f"{dist}=={metadata.version(dist)}".encode())
        except metadata.PackageNotFoundError:
            pass
    h.update(f"{WORLD_VERSION}|{platform.machine()}|{platform.processor()}".encode())
    return h.hexdigest()[:16]


def cached_world(dest: str | Path, cache: str | Path, *, progress=None) -> World:
    """The demo world at `dest`, copied from `cache/<fingerprint>` (built there first if missing).

    For test sessions that each need a fresh world: the build trains three models, the copy is
    a few megabytes. The cache entry appears only when complete (built aside, then renamed)."""
    import fcntl
    import os

    entry = Path(cache) / world_fingerprint()
    entry.parent.mkdir(parents=True, exist_ok=True)
    # parallel test workers (pytest -n) wait for the first one's build instead of each
    # training the same three models; the lock dies with its holder
    with open(entry.with_name(f"{entry.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (entry / "world.json").is_file():
            tmp = entry.with_name(f"{entry.name}.partial-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            build_world(tmp, progress=progress)
            try:
                tmp.rename(entry)
            except OSError:  # another session finished first
                shutil.rmtree(tmp, ignore_errors=True)
    dest = Path(dest)
    shutil.copytree(entry, dest)
    info = json.loads((dest / "world.json").read_text())
    paths = world_paths(dest)
    # the task config names its data files by absolute path: point it at this copy's
    (paths.tasks / f"{TASK_NAME}.yaml").write_text(task_config(paths.data))
    return World(paths, info)
