"""A Gradio Space that compares LoRA adapters of one base side by side (built by `hubkit space`).

It reads `space_config.json` beside it: the base and adapters (repo ids, pinned revisions, and
local folders when served on the machine that built it), limits, example prompts and questions,
and the recorded eval results. Run it with `python app.py`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import gradio as gr
import pandas as pd

try:
    from .engine import BASE, Engine, word_diff
except ImportError:  # run as a script, as a Space runs it
    from engine import BASE, Engine, word_diff

try:  # ZeroGPU Spaces lend a GPU per call; elsewhere the decorator does nothing
    import spaces

    gpu = spaces.GPU
except ImportError:

    def gpu(fn=None, **_):
        return fn if fn is not None else (lambda f: f)


HERE = Path(__file__).resolve().parent
# Every event that runs the model joins this one concurrency group with a limit of 1: Gradio's
# limits are per event otherwise, and Generate and Multiple choice would drive the model at once.
# (The engine's lock is what guarantees it; the shared queue keeps requests waiting in line,
# in order, instead of holding a worker thread and a request's memory each.)
MODEL_QUEUE = "model"
# Fonts the browser already has: the page must not fetch anything from outside the Space.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def load_config(path: str | Path | None = None) -> dict:
    return json.loads(Path(path or os.environ.get("HUBKIT_SPACE_CONFIG") or HERE / "space_config.json").read_text(encoding="utf-8"))


def model_folder(entry: dict) -> str:
    """A local folder when the config names one that exists here, else the repo at its pinned
    revision through huggingface_hub (the Hub this Space runs with: HF_ENDPOINT, or the offline
    cache)."""
    if entry.get("path") and Path(entry["path"]).is_dir():
        return entry["path"]
    from huggingface_hub import snapshot_download

    return snapshot_download(entry["repo_id"], revision=entry.get("revision"))


def load_engine(cfg: dict) -> Engine:
    import torch

    dtype = cfg.get("dtype", "auto")
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    adapters = {a["name"]: model_folder(a) for a in cfg["adapters"]}
    return Engine(model_folder(cfg["base"]), adapters, dtype=dtype, add_bos_token=cfg.get("add_bos_token", False))


def _label(name: str) -> str:
    return "base" if name == BASE else name


def hub_url(repo_id: str) -> str:
    """The repo's page on the Hub this Space runs with (the config names no endpoint)."""
    from huggingface_hub import constants

    return f"{constants.ENDPOINT.rstrip('/')}/{repo_id}"


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "transformers", "peft", "gradio", "huggingface_hub"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def results_frame(cfg: dict) -> pd.DataFrame:
    """The recorded runs: value ± stderr and the difference to the base per task and metric."""
    rows = cfg.get("results") or []
    cols = ["subject", "task", "metric", "value", "stderr", "Δ vs base", "strategy", "run_id"]
    if not rows:
        return pd.DataFrame(columns=cols)
    base = {(r["task"], r["metric"]): r["value"] for r in rows if r["subject"] == "base"}
    out = []
    for r in rows:
        b = base.get((r["task"], r["metric"]))
        delta = None if b is None or r["subject"] == "base" or not isinstance(r["value"], (int, float)) else r["value"] - b
        out.append(
            {
                "subject": r["subject"], "task": r["task"], "metric": r["metric"], "value": r["value"],
                "stderr": r.get("stderr"), "Δ vs base": delta, "strategy": r.get("strategy"), "run_id": r.get("run_id"),
            }
        )
    return pd.DataFrame(out, columns=cols)


def build_app(cfg: dict, engine: Engine) -> gr.Blocks:
    columns = engine.columns
    limits = cfg.get("limits", {})
    max_new = int(limits.get("max_new_tokens", 128))
    max_prompt = int(limits.get("max_prompt_tokens", 1024))
    max_choices = int(limits.get("max_choices", 10))
    template = cfg.get("mc", {}).get("template", "Question: {question}\nAnswer:")
    revisions = {"base": {k: cfg["base"].get(k) for k in ("repo_id", "revision")}} | {
        a["name"]: {k: a.get(k) for k in ("repo_id", "revision")} for a in cfg["adapters"]
    }

    @gpu
    def generate(prompt, max_new_tokens, temperature, top_p, seed, selected):
        if not prompt or not prompt.strip():
            raise gr.Error("Enter a prompt first.")
        n_tokens = len(engine.encode(prompt))
        if n_tokens > max_prompt:
            raise gr.Error(f"The prompt is {n_tokens} tokens; this Space takes at most {max_prompt}.")
        chosen = [c for c in columns if _label(c) in (selected or [])] or list(columns)
        settings = {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "top_p": float(top_p), "seed": int(seed)}
        state = None
        for cols in engine.stream(prompt, chosen, **settings):
            by = {c.name: c for c in cols}
            base_text = by[BASE].text if BASE in by else None
            texts, stats, diffs = [], [], []
            for name in columns:
                c = by.get(name)
                if c is None:
                    texts.append("")
                    stats.append("*(not selected)*")
                    diffs.append(None)
                    continue
                texts.append(c.text)
                tps = f"{c.tokens_per_s:.1f} tok/s" if c.tokens_per_s else "- tok/s"
                ttft = f"{c.first_token_s * 1000:.0f} ms" if c.first_token_s is not None else "-"
                stats.append(f"first token {ttft} · {tps} · {c.tokens} token{'' if c.tokens == 1 else 's'}" + (" · done" if c.done else ""))
                diffs.append(word_diff(base_text, c.text) if name != BASE and base_text is not None else None)
            state = {
                "kind": "generate", "prompt": prompt, "settings": settings,
                "columns": {_label(c.name): {"text": c.text, "tokens": c.tokens, "first_token_s": c.first_token_s, "seconds": c.seconds} for c in cols},
            }
            yield *texts, *stats, *diffs, state

    @gpu
    def multiple_choice(question, choices_text, normalized):
        if not question or not question.strip():
            raise gr.Error("Enter a question first.")
        choices = [c.strip() for c in (choices_text or "").splitlines() if c.strip()]
        if len(choices) < 2:
            raise gr.Error("Give at least two choices, one per line.")
        if len(choices) > max_choices:
            raise gr.Error(f"At most {max_choices} choices.")
        context = template.format(question=question.strip())
        # Every choice is a row of question + choice, so the question and all choices together
        # count against the cap (one long choice would otherwise set the batch's width).
        n_question = len(engine.encode(context))
        n_choices = [len(engine.encode_pair(context, " " + c)[1]) for c in choices]
        total = n_question + sum(n_choices)
        if total > max_prompt:
            longest = max(range(len(choices)), key=n_choices.__getitem__)
            raise gr.Error(
                f"The question and its choices are {total} tokens together (question {n_question}, longest choice "
                f"#{longest + 1} {n_choices[longest]}); this Space takes at most {max_prompt}."
            )
        scores = engine.score(context, [" " + c for c in choices])
        probs = {"choice": choices}
        logliks = {"choice": choices}
        picks = {}
        for name in columns:
            s = scores[name]
            p = s.probs(bool(normalized))
            pick = s.pick(bool(normalized))
            picks[_label(name)] = choices[pick]
            probs[_label(name)] = [f"{v:.3f}" + (" ★" if i == pick else "") for i, v in enumerate(p)]
            logliks[_label(name)] = [round(v, 4) for v in s.loglik]
            logliks[f"{_label(name)} per byte"] = [round(v / b, 4) for v, b in zip(s.loglik, s.n_bytes)]
        summary = " · ".join(f"**{k}** → {v}" for k, v in picks.items())
        state = {
            "kind": "multiple_choice", "question": question, "choices": choices, "normalized": bool(normalized), "template": template,
            "columns": {_label(n): {"loglik": scores[n].loglik, "probs": scores[n].probs(bool(normalized)), "pick": picks[_label(n)]} for n in columns},
        }
        return pd.DataFrame(probs), pd.DataFrame(logliks), summary, state

    def results(metric):
        df = results_frame(cfg)
        chart = df[df["metric"] == metric][["subject", "value"]] if metric else df[["subject", "value"]]
        return df, chart

    def export(state, fmt):
        if not state:
            raise gr.Error("Run a comparison first (Generate or Multiple choice).")
        payload = {"exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "models": revisions, "versions": _versions(), **state}
        folder = Path(tempfile.mkdtemp(prefix="compare-"))
        if fmt == "CSV":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["column", "repo_id", "revision", "field", "value"])
            for col, vals in state["columns"].items():
                rev = revisions.get(col, {})
                for k, v in vals.items():
                    w.writerow([col, rev.get("repo_id"), rev.get("revision"), k, json.dumps(v) if isinstance(v, (list, dict)) else v])
            path = folder / "comparison.csv"
            path.write_text(buf.getvalue(), encoding="utf-8")
        else:
            path = folder / "comparison.json"
            path.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
        return str(path)

    metrics = sorted({r["metric"] for r in cfg.get("results") or []})
    labels = [_label(c) for c in columns]
    with gr.Blocks(title=cfg["title"]) as demo:
        gr.Markdown(f"# {cfg['title']}\n{cfg.get('summary') or ''}")
        state = gr.State(None)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    prompt = gr.Textbox(label="Prompt", lines=3, max_length=max_prompt * 8, elem_id="prompt")
                    if cfg.get("prompts"):
                        gr.Examples([[p] for p in cfg["prompts"]], inputs=[prompt])
                with gr.Column(scale=2):
                    max_tokens = gr.Slider(1, max_new, value=min(32, max_new), step=1, label="New tokens")
                    temperature = gr.Slider(0.0, 2.0, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                    top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p")
                    seed = gr.Number(value=0, precision=0, label="Seed (shared by every column)")
                    selected = gr.CheckboxGroup(labels, value=labels, label="Columns")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                stop = gr.Button("Stop", variant="stop", elem_id="stop")
            texts, stats, diffs = [], [], []
            with gr.Row():
                for i, name in enumerate(columns):
                    with gr.Column(min_width=220):
                        gr.Markdown(f"### {_label(name)}")
                        texts.append(gr.Textbox(label="output", lines=6, interactive=False, elem_id=f"out-{i}", elem_classes=["hubkit-out"]))
                        stats.append(gr.Markdown(elem_id=f"stats-{i}"))
                        diffs.append(
                            gr.HighlightedText(label="words vs base", combine_adjacent=True, color_map={"+": "green", "-": "red"}, visible=name != BASE, elem_id=f"diff-{i}")
                        )
            gen_inputs, gen_outputs = [prompt, max_tokens, temperature, top_p, seed, selected], [*texts, *stats, *diffs, state]
            clicked = run.click(generate, gen_inputs, gen_outputs, api_name="generate", concurrency_limit=1, concurrency_id=MODEL_QUEUE)
            submitted = prompt.submit(generate, gen_inputs, gen_outputs, api_name=False, concurrency_limit=1, concurrency_id=MODEL_QUEUE)
            stop.click(None, None, None, cancels=[clicked, submitted], api_name=False)
        with gr.Tab("Multiple choice"):
            with gr.Row():
                question = gr.Textbox(label="Question", lines=2, max_length=max_prompt * 8, elem_id="question")
                choices = gr.Textbox(label="Choices (one per line)", lines=4, max_length=max_prompt * 8, elem_id="choices")
            normalized = gr.Checkbox(label="Normalize by length (lm-eval's acc_norm)", value=False)
            examples = cfg.get("mc", {}).get("examples") or []
            if examples:
                gr.Examples([[e["question"], "\n".join(e["choices"])] for e in examples], inputs=[question, choices])
            score = gr.Button("Score", variant="primary", elem_id="score")
            picks = gr.Markdown(elem_id="picks")
            probs = gr.Dataframe(label="Probability of each choice (★ = the model's pick)", interactive=False)
            logliks = gr.Dataframe(label="Log-likelihoods (summed over the choice's tokens)", interactive=False)
            score.click(
                multiple_choice, [question, choices, normalized], [probs, logliks, picks, state], api_name="multiple_choice",
                concurrency_limit=1, concurrency_id=MODEL_QUEUE,
            )
        with gr.Tab("Results"):
            if metrics:
                metric = gr.Dropdown(metrics, value=metrics[0], label="Metric for the chart")
            else:
                metric = gr.Dropdown([], value=None, label="Metric for the chart")
                gr.Markdown("No recorded eval runs were bundled with this Space.")
            table = gr.Dataframe(label="Recorded runs (hubkit eval)", interactive=False)
            chart = gr.BarPlot(x="subject", y="value", label="Value per model", y_lim=None)
            metric.change(results, [metric], [table, chart], api_name=False)
            demo.load(results, [metric], [table, chart], api_name="results")
        with gr.Tab("About"):
            parts = []
            for a in [cfg["base"], *cfg["adapters"]]:
                link = f"[`{a['repo_id']}`]({hub_url(a['repo_id'])})" if a.get("repo_id") else "(local)"
                rev = f" @ `{a['revision'][:12]}`" if a.get("revision") else ""
                parts.append(f"### {a['name']}\n{link}{rev}\n\n{a.get('summary') or ''}")
                if a is not cfg["base"] and a.get("repo_id"):
                    parts.append(
                        "```python\nfrom transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n\n"
                        f"base = AutoModelForCausalLM.from_pretrained({cfg['base'].get('repo_id')!r})\n"
                        f"model = PeftModel.from_pretrained(base, {a['repo_id']!r}" + (f", revision={a['revision']!r}" if a.get("revision") else "") + ")\n```"
                    )
            gr.Markdown("\n\n".join(parts))
            with gr.Row():
                fmt = gr.Radio(["JSON", "CSV"], value="JSON", label="Export format")
                export_btn = gr.Button("Export the current comparison", elem_id="export")
            exported = gr.File(label="Comparison", interactive=False)
            export_btn.click(export, [state, fmt], [exported], api_name="export")
    return demo


def create(config_path: str | Path | None = None) -> tuple[gr.Blocks, Engine]:
    cfg = load_config(config_path)
    engine = load_engine(cfg)
    demo = build_app(cfg, engine)
    demo.queue(default_concurrency_limit=1, max_size=64)  # and the model's events share MODEL_QUEUE
    return demo, engine


if __name__ == "__main__":
    app, _ = create()
    app.launch(theme=THEME, show_error=True)
