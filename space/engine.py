"""Side-by-side inference for one base model and N LoRA adapters.

Every adapter is loaded by name into one `PeftModel`, and every request is one batch with one
row per column: peft's `adapter_names=` routes each row through its adapter (`"__base__"` for
none). So N adapters cost one base plus N small adapters in memory, and no request ever flips
a global "active adapter" under another one.

peft routes `adapter_names` by registering forward hooks on the shared LoRA layers for the length
of one call, so two forwards at once would read each other's routing (peft then fails with
"Length of `adapter_names` should be the same as the number of inputs", or worse, silently routes
a row through the wrong adapter). Every forward therefore holds the engine's lock: whatever the
web server's queue does, the model runs one batch at a time.

This file ships inside the Space (it needs torch, transformers and peft, not hubkit).
"""

from __future__ import annotations

import difflib
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator

import torch

BASE = "__base__"


@dataclass
class Column:
    """The state of one column of a streamed generation."""

    name: str
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    done: bool = False
    first_token_s: float | None = None
    seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return len(self.token_ids)

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.seconds if self.seconds > 0 and self.tokens else None


@dataclass
class ChoiceScores:
    """lm-eval-style scores of each choice for one column."""

    loglik: list[float]
    greedy: list[bool]  # the continuation is the model's greedy one (lm-eval's is_greedy)
    n_bytes: list[int]

    def probs(self, normalized: bool = False) -> list[float]:
        """Probability over the choices: softmax of the summed log-likelihoods (or of the
        per-byte ones, lm-eval's acc_norm)."""
        scores = [ll / b if normalized else ll for ll, b in zip(self.loglik, self.n_bytes)]
        top = max(scores)
        exp = [math.exp(s - top) for s in scores]
        total = sum(exp)
        return [e / total for e in exp]

    def pick(self, normalized: bool = False) -> int:
        p = self.probs(normalized)
        return p.index(max(p))


def _dtype(name: str):
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


class Engine:
    """One base + named adapters, served as mixed batches."""

    def __init__(self, base: str, adapters: dict[str, str], *, tokenizer: str | None = None, dtype: str = "float32", device: str | None = None, add_bos_token: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.add_bos_token = add_bos_token
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer or base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=_dtype(dtype))
        self.adapters = list(adapters)
        if adapters:
            from peft import PeftModel

            first, *rest = adapters.items()
            model = PeftModel.from_pretrained(model, first[1], adapter_name=first[0])
            for name, path in rest:
                model.load_adapter(path, adapter_name=name)
        self.model = model.to(self.device).eval()
        self.columns = [BASE, *self.adapters]
        eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else (min(self.eos_ids) if self.eos_ids else 0)
        # Held per forward, not per request: a streamed generation the caller abandons mid-way
        # (Gradio's Stop) never leaves the lock taken.
        self.lock = threading.Lock()

    # -- plumbing ------------------------------------------------------------------------------
    def _check(self, columns: list[str]) -> list[str]:
        columns = list(columns) or list(self.columns)
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}; this Space has {self.columns}")
        return columns

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=self.add_bos_token)["input_ids"]

    def _forward(self, names: list[str], **kw):
        if self.adapters:
            kw["adapter_names"] = names
        with self.lock:
            return self.model(**kw)

    # -- generation ------------------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, prompt: str, columns: list[str] | None = None, *, max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0) -> Iterator[list[Column]]:
        """Generate for every column at once; yields the columns after each new token.

        Greedy when temperature is 0. With sampling, each column draws from its own generator
        seeded with `seed`, so a column's text depends on the seed and its adapter only, not on
        which other columns share the batch."""
        names = self._check(columns or [])
        ids = self.encode(prompt)
        if not ids:
            raise ValueError("the prompt encodes to no tokens")
        n = len(names)
        input_ids = torch.tensor([ids] * n, device=self.device)
        mask = torch.ones_like(input_ids)
        gens = [torch.Generator().manual_seed(int(seed)) for _ in names]  # sampled on the CPU: same draws on any device
        cols = [Column(name) for name in names]
        t0 = time.perf_counter()
        out = self._forward(names, input_ids=input_ids, attention_mask=mask, use_cache=True)
        for _ in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()
            nxt = []
            for i, col in enumerate(cols):
                if col.done:
                    nxt.append(self.pad_id)
                    continue
                tok = _pick(logits[i], temperature, top_p, top_k, gens[i])
                now = time.perf_counter() - t0
                col.first_token_s = col.first_token_s if col.first_token_s is not None else now
                if tok in self.eos_ids:
                    col.done = True
                else:
                    col.token_ids.append(tok)
                    col.text = self.tokenizer.decode(col.token_ids, skip_special_tokens=True)
                col.seconds = now
                nxt.append(tok)
            yield cols
            if all(c.done for c in cols):
                break
            step = torch.tensor(nxt, device=self.device)[:, None]
            mask = torch.cat([mask, torch.ones_like(step)], dim=1)
            out = self._forward(names, input_ids=step, attention_mask=mask, past_key_values=out.past_key_values, use_cache=True)
        for col in cols:
            col.done = True
        yield cols

    def generate(self, prompt: str, columns: list[str] | None = None, **kw) -> dict[str, str]:
        last = None
        for last in self.stream(prompt, columns, **kw):
            pass
        return {c.name: c.text for c in last or []}

    # -- multiple choice -------------------------------------------------------------------------
    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """lm-eval's split: trailing spaces of the context move to the continuation; the
        continuation's tokens are those of (context + continuation) after the context's."""
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        whole = self.encode(context + continuation)
        ctx = self.encode(context)
        return ctx, whole[len(ctx):]

    @torch.inference_mode()
    def score(self, context: str, choices: list[str], columns: list[str] | None = None) -> dict[str, ChoiceScores]:
        """Log-likelihood of each continuation given `context`, for every column, in one batch of
        len(columns) x len(choices) rows (lm-eval's loglikelihood requests)."""
        names = self._check(columns or [])
        pairs = [self.encode_pair(context, c) for c in choices]
        rows, meta = [], []
        for name in names:
            for ctx, cont in pairs:
                if not ctx:  # lm-eval conditions an empty context on the end-of-text token
                    ctx = [self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.pad_id]
                rows.append((ctx + cont)[:-1])
                meta.append((name, cont))
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, device=self.device)
        mask = torch.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, device=self.device)
            mask[i, : len(r)] = 1
        logp = torch.log_softmax(self._forward([m[0] for m in meta], input_ids=input_ids, attention_mask=mask).logits.float(), dim=-1)
        out: dict[str, ChoiceScores] = {n: ChoiceScores([], [], []) for n in names}
        for i, (name, cont) in enumerate(meta):
            end = len(rows[i])
            span = logp[i, end - len(cont) : end]  # the positions that predict the continuation
            target = torch.tensor(cont, device=self.device)
            out[name].loglik.append(span.gather(1, target[:, None]).sum().item())
            out[name].greedy.append(bool((span.argmax(-1) == target).all()))
        for name in names:
            out[name].n_bytes = [max(1, len(c.encode("utf-8"))) for c in choices]
        return out


def _pick(logits: torch.Tensor, temperature: float, top_p: float, top_k: int, gen: torch.Generator) -> int:
    if temperature <= 0:
        return int(logits.argmax())
    logits = logits / temperature
    if top_k and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        sorted_p, idx = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p
        keep[0] = True
        probs = torch.zeros_like(probs).scatter(0, idx[keep], sorted_p[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs.cpu(), 1, generator=gen).item())


def word_diff(base: str, other: str) -> list[tuple[str, str | None]]:
    """Word-level diff of `other` against `base` as (text, label) pairs for gr.HighlightedText:
    label "+" for words only in `other`, "-" for words only in `base`, None for shared text."""
    a, b = re.findall(r"\S+|\s+", base), re.findall(r"\S+|\s+", other)
    out: list[tuple[str, str | None]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(("".join(b[j1:j2]), None))
            continue
        if i2 > i1:
            out.append(("".join(a[i1:i2]), "-"))
        if j2 > j1:
            out.append(("".join(b[j1:j2]), "+"))
    return out
