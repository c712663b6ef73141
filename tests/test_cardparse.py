"""Card parsing on real Hugging Face model cards (tests/data/real/cards, see its SOURCES.md), the
seed cards (reference data outside the repo) and three hand-written shapes (tests/data/cards).

Expected values below were read off the cards themselves; huggingface_hub's own parser is the
reference for model-index; hubkit's own card renderer checks that a drafted manifest carries
every number of the card it came from.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hubkit.cardparse import (
    claims_from_card,
    find_task_in_text,
    manifest_draft,
    map_task,
    parse_card,
    parse_value,
    pins_dict,
    read_card,
    render_draft_yaml,
)
from hubkit.manifest import parse_manifest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real" / "cards"
FIXTURES = REPO / "tests" / "data" / "cards"
SEEDS = next((p for p in (REPO.parent / "shared" / "seeds", Path("/work/shared/seeds")) if p.is_dir()), None)
needs_seeds = pytest.mark.skipif(SEEDS is None, reason="seed cards (../shared/seeds) are not in this checkout")

CARDS = sorted(REAL.glob("*.md")) + sorted(p for p in FIXTURES.glob("*.md") if p.name != "SOURCES.md")
SEED_PARAMS = [pytest.param(n, marks=needs_seeds) for n in ("000", "001", "002")]


def read(path: Path) -> str:
    """The file's text with its own line endings (read_text would turn CRLF into LF)."""
    return path.read_bytes().decode("utf-8")


def seed(n: str) -> str:
    return read(next(SEEDS.glob(f"{n}_*.txt")))


def card(name: str):
    return parse_card(read(REAL / name if (REAL / name).exists() else FIXTURES / name))


def rows(claims, **where):
    return [c for c in claims if all(getattr(c, k) == v for k, v in where.items())]


def simple(claims) -> list[tuple]:
    return [(c.subject, c.task, c.metric, c.value_text, c.stderr, c.num_fewshot) for c in claims]


# -- properties every card must have ----------------------------------------------------------------


def all_texts():
    for p in CARDS:
        yield pytest.param(p.name, read(p), id=p.name)
    for n in ("000", "001", "002"):
        yield pytest.param(f"seed{n}", None, id=f"seed{n}", marks=needs_seeds)


def _text(name: str, text: str | None) -> str:
    return text if text is not None else seed(name.removeprefix("seed"))


@pytest.mark.parametrize("name, text", all_texts())
def test_every_number_of_a_results_table_is_a_claim(name, text):
    parsed = parse_card(_text(name, text))
    claims = claims_from_card(parsed)
    for t in parsed.tables:
        mine = [c for c in claims if c.table == t.index]
        if t.kind != "results":
            assert not mine
            continue
        assert mine, f"results table {t.index} of {name} gave no claims"
        first = min(c.column for c in mine)
        at = {(c.row, c.column): c for c in mine}
        for r, row in enumerate(t.rows):
            for col in range(first, len(t.header)):
                cell = row[col] if col < len(row) else ""
                if re.search(r"\d", cell) and not re.fullmatch(r"\s*(True|False)\s*", cell):
                    assert (r, col) in at, f"{name} table {t.index}: {cell!r} (row {r}, column {col}) is no claim"
                    assert at[(r, col)].value_text == cell.strip()


@pytest.mark.parametrize("path", [p for p in CARDS if "model-index" in read(p)], ids=lambda p: p.name)
def test_model_index_equals_huggingface_hubs_parse(path):
    from huggingface_hub import ModelCard

    text = read(path)
    hub = ModelCard(text, ignore_metadata_errors=True).data.eval_results
    parsed = parse_card(text)
    assert len(parsed.model_index) == len(hub) > 0
    for mine, theirs in zip(parsed.model_index, hub):
        assert (mine.dataset_name, mine.dataset_type, mine.dataset_config, mine.dataset_split, mine.dataset_args) == (
            theirs.dataset_name, theirs.dataset_type, theirs.dataset_config, theirs.dataset_split, theirs.dataset_args,
        )
        assert (mine.metric_type, mine.metric_name, mine.value, mine.source_url) == (theirs.metric_type, theirs.metric_name, theirs.metric_value, theirs.source_url)
    claims = [c for c in claims_from_card(parsed) if c.origin == "model-index"]
    assert [c.value_text for c in claims] == [str(r.metric_value) for r in hub]
    assert all(c.this_model for c in claims)


def _numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


@pytest.mark.parametrize("name, text", all_texts())
def test_drafted_manifest_validates_and_its_card_carries_every_number(name, text, tmp_path):
    """`hubkit import` then `hubkit card`: each number the card claims is on the rendered card
    (as written, or to more decimals when model-index gave more)."""
    from hubkit.card import render_card

    parsed = parse_card(_text(name, text))
    draft = manifest_draft(parsed)
    manifest = parse_manifest(draft.manifest)
    rendered = render_card(manifest, next(iter(manifest.artifacts)), runs_dir=tmp_path / "runs").text
    shown = _numbers(rendered)
    for c in claims_from_card(parsed):
        if c.value is None:
            continue
        m = re.search(r"\d[\d,]*(?:\.(\d+))?", c.value_text)
        places = len(m.group(1) or "") if m else 0
        assert any(round(x, places) == round(abs(c.value), places) for x in shown), f"{name}: {c.subject} {c.task} {c.value_text!r} is not on the card"
    # what the card cannot tell is a TODO, never a made-up value
    assert any(t.startswith("artifacts") for t in draft.todo)
    assert "authors" not in draft.manifest["project"]
    yaml_text = render_draft_yaml(draft)
    assert yaml_text.startswith("# Drafted by `hubkit import`") and "# TODO before publishing:" in yaml_text


@pytest.mark.parametrize("path", [p for p in CARDS if b"\r\n" in p.read_bytes()], ids=lambda p: p.name)
def test_crlf_cards_parse_like_their_lf_text(path):
    text = read(path)
    crlf, lf = parse_card(text), parse_card(text.replace("\r\n", "\n"))
    assert crlf.line_endings == "crlf" and lf.line_endings == "lf"
    assert crlf.model_dump(exclude={"line_endings"}) == lf.model_dump(exclude={"line_endings"})


# -- card by card -------------------------------------------------------------------------------------


def test_platypus_leaderboard_table_commands_and_harness_pin():
    p = card("platypus2-70b-instruct.md")
    assert (p.license, p.language, p.datasets) == ("cc-by-nc-4.0", ["en"], ["garage-bAInd/Open-Platypus", "Open-Orca/OpenOrca"])
    (t,) = [t for t in p.tables if t.kind == "results"]
    assert t.section == "Open LLM Leaderboard Evaluation Results" and t.header == ["Metric", "Value"]
    claims = claims_from_card(p)
    assert {c.subject for c in claims} == {"Platypus2-70B-instruct"} and all(c.this_model and c.orientation == "single-model" for c in claims)
    assert [(c.task, c.value_text, c.num_fewshot, c.task_display) for c in claims] == [
        ("Avg.", "66.89", None, "Avg."),
        ("arc_challenge", "71.84", 25, "ARC (25-shot)"),
        ("hellaswag", "87.94", 10, "HellaSwag (10-shot)"),
        ("mmlu", "70.48", 5, "MMLU (5-shot)"),
        ("truthfulqa_mc2", "62.26", 0, "TruthfulQA (0-shot)"),
        ("winogrande", "82.72", 5, "Winogrande (5-shot)"),
        ("gsm8k", "40.56", 5, "GSM8K (5-shot)"),
        ("drop", "52.41", 3, "DROP (3-shot)"),
    ]
    # the table states no metric: each is the benchmark's usual one, and says so
    assert [(c.metric, c.metric_guessed) for c in claims[1:3]] == [("acc_norm", True), ("acc_norm", True)]
    assert claims[0].metric is None
    assert [(c.command.tasks, c.command.num_fewshot, c.command.model, c.command.dialect, c.section) for c in p.commands] == [
        (["arc_challenge"], 25, "hf-causal-experimental", "0.3", "Reproducing Evaluation Results"),
        (["hellaswag"], 10, "hf-causal-experimental", "0.3", "Reproducing Evaluation Results"),
        (["hendrycksTest-*"], 5, "hf-causal-experimental", "0.3", "Reproducing Evaluation Results"),
        (["truthfulqa_mc"], None, "hf-causal-experimental", "0.3", "Reproducing Evaluation Results"),
    ]
    assert [(x.package, x.spec, x.kind) for x in p.pins] == [
        ("lm-eval", "@ git+https://github.com/EleutherAI/lm-evaluation-harness@b281b0921b636bc36ad05c0b0b0763bd6dd43463", "git-checkout")
    ]
    assert [(b.key, b.complete) for b in p.bibtex] == [("platypus2023", True), ("touvron2023llama", False), ("hu2022lora", True)]
    draft = manifest_draft(p)
    evals = draft.manifest["evals"]
    assert list(evals) == ["arc-challenge-25shot", "hellaswag-10shot", "hendryckstest-5shot", "truthfulqa-mc"]
    assert all(e["pins"] == {"lm-eval": "@ git+https://github.com/EleutherAI/lm-evaluation-harness@b281b0921b636bc36ad05c0b0b0763bd6dd43463"} for e in evals.values())
    # the 0.3 task names still find the claims they reproduce
    setups = {c["task"]: c.get("setup") for c in draft.manifest["claims"]}
    assert setups["mmlu"] == "hendryckstest-5shot" and setups["truthfulqa_mc2"] == "truthfulqa-mc" and setups["arc_challenge"] == "arc-challenge-25shot"
    assert any("touvron2023llama" in t for t in draft.todo)


def test_speechless_tables_model_index_and_bare_pins():
    p = card("speechless-codellama-34b-v2.md")
    assert [t.kind for t in p.tables] == ["results", "results", "results", "other", "other", "other", "results"]
    claims = claims_from_card(p)
    (mi,) = rows(claims, origin="model-index")
    assert (mi.subject, mi.task, mi.metric, mi.value) == ("SpeechlessCoder", "humaneval", "pass@1", 75.61)
    (own,) = rows(claims, table=0)
    assert (own.subject, own.this_model, own.task, own.task_display, own.metric, own.value) == ("speechless-codellama-34b-v2.0", True, "humaneval", "humaneval-python", "pass@1", 75.61)
    board = rows(claims, table=1)
    assert board[0].orientation == "models-as-rows" and {c.task for c in board} == {"humaneval"} and {c.metric for c in board} == {"pass@1"}
    assert [(c.subject, c.value) for c in board] == [
        ("Phind-CodeLlama-34B-v2", 71.95), ("WizardCoder-Python-34B-V1.0", 70.73), ("Phind-CodeLlama-34B-Python-v1", 70.22),
        ("Phind-CodeLlama-34B-v1", 65.85), ("WizardCoder-Python-13B-V1.0", 62.19), ("WizardCoder-15B-V1.0", 58.12),
        ("CodeLlama-34B-Python", 53.29), ("CodeLlama-34B-Instruct", 50.79), ("CodeLlama-13B-Instruct", 50.6),
        ("CodeLlama-34B", 45.11), ("CodeLlama-13B-Python", 42.89), ("CodeLlama-13B", 35.07),
    ]
    assert not any(c.this_model for c in board)
    harness = rows(claims, table=2)
    assert [(c.task, c.value) for c in harness] == [("arc_challenge", 54.35), ("hellaswag", 75.65), ("mmlu", 54.67), ("truthfulqa_mc2", 45.21), ("Average", 57.47)]
    assert rows(claims, table=6)[6].value_text == "11.6"  # GSM8K, 5-shot
    assert p.tables[2].caption == "[Open LLM Leaderboard](https://huggingface.co/spaces/HuggingFaceH4/open_llm_leaderboard)"
    assert [(x.package, x.spec, x.kind, x.line) for x in p.pins] == [
        ("transformers", "==4.33.0", "bare", 111), ("flash-attn", "==2.1.0", "bare", 113), ("bitsandbytes", "==0.41.1", "bare", 115), ("peft", "==0.5.0", "bare", 117),
    ]


def test_zephyr_model_index_comparison_table_and_trainer_sections():
    p = card("zephyr-7b-beta.md")
    assert p.model_names[:2] == ["Zephyr 7B β", "zephyr-7b-beta"]
    assert p.base_models == ["mistralai/Mistral-7B-v0.1"]
    claims = claims_from_card(p)
    mi = rows(claims, origin="model-index")
    assert [(c.task, c.metric, c.num_fewshot) for c in mi] == [
        ("arc_challenge", "acc_norm", 25), ("hellaswag", "acc_norm", 10), ("drop", "f1", 3), ("truthfulqa_mc2", "acc", 0),
        ("gsm8k", "acc", 5), ("mmlu", "acc", 5), ("winogrande", "acc", 5), ("AlpacaEval", "win rate", None), ("MT-Bench", "score", None),
    ]
    perf = rows(claims, table=0)
    assert perf[0].orientation == "models-as-rows"
    # 15 models x 2 benchmarks, minus the 6 cells written '-'
    assert len(perf) == 24
    own = [c for c in perf if c.this_model]
    assert [(c.subject, c.task, c.value_text, c.value) for c in own] == [
        ("Zephyr-7b-β", "MT-Bench", "**7.34**", 7.34), ("Zephyr-7b-β", "AlpacaEval", "**90.60**", 90.6),
    ]
    assert rows(perf, subject="Xwin-LM v0.1")[0].task == "AlpacaEval"  # its MT-Bench cell is '-'
    assert p.tables[1].kind == "other" and p.tables[1].section == "Training results"
    # the leaderboard table's guessed GSM8K metric yields to the one model-index states
    (gsm,) = rows(claims, table=2, task="gsm8k")
    assert (gsm.metric, gsm.value_text) == ("acc", "12.74")
    assert [(x.package, x.spec, x.kind) for x in p.pins] == [
        ("transformers", "==4.35.0.dev0", "framework-versions"), ("torch", "==2.0.1+cu118", "framework-versions"),
        ("datasets", "==2.12.0", "framework-versions"), ("tokenizers", "==0.14.0", "framework-versions"),
    ]
    draft = manifest_draft(p)
    claims_out = draft.manifest["claims"]
    # the same number in model-index and in the leaderboard table is one claim with both sources
    (arc,) = [c for c in claims_out if c["task"] == "arc_challenge"]
    assert arc["value"] == 62.03071672354948 and "Open LLM Leaderboard Evaluation Results" in arc["source"]
    # a real disagreement (0.9060 in model-index, 90.60 in the table) is kept twice and reported
    assert any("AlpacaEval" in t and "0.906" in t and "90.6" in t for t in draft.todo)
    assert draft.manifest["project"]["links"]["repository"] == "https://github.com/huggingface/alignment-handbook"


def test_neuralhermes_numbers_only_in_model_index():
    p = card("neuralhermes-2.5-mistral-7b.md")
    assert not [t for t in p.tables if t.kind == "results"]
    claims = claims_from_card(p)
    assert simple(claims) == [
        ("NeuralHermes-2.5-Mistral-7B", "arc_challenge", "acc_norm", "66.55", None, 25),
        ("NeuralHermes-2.5-Mistral-7B", "hellaswag", "acc_norm", "84.9", None, 10),
        ("NeuralHermes-2.5-Mistral-7B", "mmlu", "acc", "63.32", None, 5),
        ("NeuralHermes-2.5-Mistral-7B", "truthfulqa_mc2", "acc", "54.93", None, 0),
        ("NeuralHermes-2.5-Mistral-7B", "winogrande", "acc", "78.3", None, 5),
        ("NeuralHermes-2.5-Mistral-7B", "gsm8k", "acc", "61.33", None, 5),
    ]
    assert [c.metric_display for c in claims][3] == "mc2"
    assert all(c.source.startswith("model-index: Open LLM Leaderboard (https://huggingface.co/spaces/HuggingFaceH4/open_llm_leaderboard") for c in claims)


def test_starcoder2_model_index_keeps_unmapped_benchmarks_by_name():
    claims = claims_from_card(card("starcoder2-3b.md"))
    assert [(c.task, c.task_mapped, c.metric, c.value) for c in claims] == [
        ("CruxEval-I", False, "pass@1", 32.7), ("DS-1000", False, "pass@1", 25.0), ("GSM8K (PAL)", False, "acc", 27.7),
        ("humaneval_plus", True, "pass@1", 27.4), ("humaneval", True, "pass@1", 31.7), ("RepoBench-v1.1", False, "edit-smiliarity", 71.19),
    ]


@pytest.mark.parametrize("name", ["llama-2-7b-chat.md", "thebloke-llama-2-7b-chat-gguf.md"])
def test_llama2_benchmark_and_safety_tables(name):
    p = card(name)
    results = [t for t in p.tables if t.kind == "results"]
    assert [t.header[2:4] for t in results] == [["Code", "Commonsense Reasoning"], ["TruthfulQA", "Toxigen"], ["TruthfulQA", "Toxigen"]]
    others = [t for t in p.tables if t.kind == "other"]
    assert {t.section for t in others} >= {"Model Details", "Hardware and Software", "Llama Model Index"}
    claims = claims_from_card(p)
    bench = rows(claims, table=results[0].index)
    assert len(bench) == 7 * 8
    # the subject needs both label columns ('Llama 1' repeats across sizes)
    assert [c.subject for c in bench[::8]] == ["Llama 1 7B", "Llama 1 13B", "Llama 1 33B", "Llama 1 65B", "Llama 2 7B", "Llama 2 13B", "Llama 2 70B"]
    assert [(c.task, c.task_mapped) for c in bench[:8]] == [
        ("Code", False), ("Commonsense Reasoning", False), ("World Knowledge", False), ("Reading Comprehension", False),
        ("Math", False), ("mmlu", True), ("bbh", True), ("agieval", True),
    ]
    assert [c.value_text for c in bench if c.subject == "Llama 2 70B"][:2] == ["**37.5**", "**71.9**"]
    chat = rows(claims, table=results[2].index)
    # TruthfulQA here is a generation metric (the note says so), not lm-eval's truthfulqa_mc2
    assert [(c.subject, c.task, c.task_mapped, c.value_text) for c in chat] == [
        ("Llama-2-Chat 7B", "TruthfulQA", False, "57.04"), ("Llama-2-Chat 7B", "toxigen", True, "**0.00**"),
        ("Llama-2-Chat 13B", "TruthfulQA", False, "62.18"), ("Llama-2-Chat 13B", "toxigen", True, "**0.00**"),
        ("Llama-2-Chat 70B", "TruthfulQA", False, "**64.14**"), ("Llama-2-Chat 70B", "toxigen", True, "0.01"),
    ]
    assert results[1].note.startswith("**Evaluation of pretrained LLMs on automatic safety benchmarks.**")


def test_phi3_models_as_columns_with_categories_and_fewshot_in_cells():
    p = card("phi-3-mini-4k-instruct.md")
    kinds = [(t.kind, t.section) for t in p.tables]
    assert kinds == [("other", "Model Summary"), ("results", "Release Notes"), ("results", "Benchmarks"), ("results", "Benchmarks")]
    claims = claims_from_card(p)
    big = rows(claims, table=2)
    assert {c.orientation for c in big} == {"models-as-columns"}
    assert len(big) == 19 * 6
    assert [c.subject for c in big[:6]] == ["Phi-3-Mini-4K-Ins", "Gemma-7B", "Mistral-7b", "Mixtral-8x7b", "Llama-3-8B-Ins", "GPT3.5-Turbo-1106"]
    boolq = rows(big, task="boolq")
    # 'BoolQ <br>0-shot' in a row whose Category cell is empty: the category above carries on
    assert {(c.num_fewshot, c.domain) for c in boolq} == {(0, "Reasoning")}
    (tqa,) = rows(big, task="truthfulqa_mc2", subject="Phi-3-Mini-4K-Ins")
    assert (tqa.num_fewshot, tqa.value, tqa.metric, tqa.metric_guessed) == (10, 64.7, "acc", False)
    (arc,) = rows(big, task="arc_challenge", subject="GPT3.5-Turbo-1106")
    assert (arc.num_fewshot, arc.value, arc.domain) == (10, 87.4, "Reasoning")
    avg = rows(big, subject="Gemma-7B")[-1]
    assert (avg.task, avg.value_text, avg.domain) == ("Average", "**56.0**", None)
    assert len(rows(claims, table=3)) == 8 * 6
    assert [(x.package, x.spec, x.kind) for x in p.pins] == [
        ("flash-attn", "==2.5.8", "requirements"), ("torch", "==2.3.1", "requirements"), ("accelerate", "==0.31.0", "requirements"), ("transformers", "==4.41.2", "requirements"),
    ]
    assert p.license_link == "https://huggingface.co/microsoft/Phi-3-mini-4k-instruct/resolve/main/LICENSE"


def test_unsloth_claims_keep_their_words_and_notebook_links():
    p = card("unsloth-llama-3.2-1b-instruct.md")
    assert p.title == "unsloth/Llama-3.2-1B-Instruct"  # not the slogan H1 above it
    claims = claims_from_card(p)
    assert len(claims) == 14
    first = claims[:2]
    assert [(c.subject, c.task, c.value_text, c.value, c.unit) for c in first] == [
        ("Llama-3.2 (3B)", "Performance", "2.4x faster", 2.4, "x"), ("Llama-3.2 (3B)", "Memory use", "58% less", 58.0, "%"),
    ]
    assert first[0].links == ["https://colab.research.google.com/drive/1Ys44kVvmeZtnICzWz0xgpRnrIOjZAuxp?usp=sharing"]


def test_autotrain_leading_blank_line_crlf_and_metric_lines():
    raw = read(REAL / "autotrain-twitter-spam-classifier.md")
    assert raw.startswith("\r\n---")
    p = parse_card(raw)
    assert p.front_matter_blocks == 1 and p.tags == ["autotrain", "text-classification"] and p.datasets == ["autotrain-57208-4mv8z/autotrain-data"]
    claims = claims_from_card(p)
    assert [(c.metric, c.value_text, c.orientation) for c in claims] == [
        ("loss", "0.4916948974132538", "metric-list"), ("f1", "0.8059701492537313", "metric-list"), ("precision", "0.782608695652174", "metric-list"),
        ("recall", "0.8307692307692308", "metric-list"), ("auc", "0.8416783216783217", "metric-list"), ("acc", "0.7833333333333333", "metric-list"),
    ]
    assert manifest_draft(p).manifest["project"]["license"] == "unknown"


def test_stacked_front_matter_blocks():
    p = card("augmental-remm-13b.md")
    assert p.front_matter_blocks == 3
    assert p.hub_metadata == {"license": "llama2"}  # all the Hub reads
    assert p.metadata == {"license": "llama2", "library_name": "peft", "base_model": "Undi95/ReMM-v2-L2-13B"}
    assert p.base_models == ["Undi95/ReMM-v2-L2-13B"] and p.library_name == "peft"
    assert any("stacked" in x for x in p.problems)
    assert p.sections[0].title.startswith("Augmental-13b")
    assert [(x.package, x.spec, x.kind) for x in p.pins] == [("peft", "==0.6.1", "framework-versions")]


def test_peft_auto_cards_and_templates():
    old = card("peft-0.4-bnb-config-card.md")
    assert old.metadata == {"library_name": "peft"} and not claims_from_card(old)
    assert [(x.package, x.spec) for x in old.pins] == [("peft", "==0.4.0")]  # written six times, one pin
    tpl = card("peft-template-qlora-phi-3.5-mini.md")
    assert tpl.base_models == ["unsloth/phi-3.5-mini-instruct-bnb-4bit"] and tpl.model_names == []
    draft = manifest_draft(tpl)
    assert draft.manifest["project"]["name"] == "unnamed model"
    assert any(t.startswith("project.name:") for t in draft.todo)


def test_mergekit_and_gguf_cards():
    self_merge = card("meta-llama-3-120b-instruct-mergekit-passthrough.md")
    assert self_merge.base_models == ["meta-llama/Meta-Llama-3-70B-Instruct"]  # listed 7 times
    assert self_merge.metadata["base_model"] == ["meta-llama/Meta-Llama-3-70B-Instruct"] * 7
    draft = manifest_draft(self_merge)
    assert draft.manifest["project"]["license"] == "unknown" and any("license: other" in t for t in draft.todo)
    ties = card("mn-12b-starcannon-v2-mergekit-ties.md")
    assert ties.base_models == ["nothingiisreal/MN-12B-Celeste-V1.9", "intervitens/mini-magnum-12b-v1.1"] and ties.title == "MN-12B-Starcannon-v2"
    gguf = card("bartowski-llama-3.1-8b-instruct-gguf.md")
    assert [t.kind for t in gguf.tables] == ["other"] and gguf.tables[0].header[:2] == ["Filename", "Quant type"]
    assert gguf.license == "llama3.1" and not claims_from_card(gguf)


# -- the seeds (pasted page text) ----------------------------------------------------------------------


@needs_seeds
def test_seed000_text_card():
    p = parse_card(seed("000"))
    assert p.text_mode and p.title == "Mistral-7B-v0.1-NCA-ARC (LoRA adapter)"
    (t,) = [t for t in p.tables if t.kind == "results"]
    assert t.form == "text" and t.header == ["Run", "acc_norm", "Δ baseline"] and t.section == "Performance — ARC-Challenge 25-shot (acc_norm)"
    claims = [c for c in claims_from_card(p) if not c.derived]
    assert simple(claims) == [
        ("Mistral-7B-v0.1 (pretrained)", "arc_challenge", "acc_norm", "0.6143", None, 25),
        ("Reference SFT", "arc_challenge", "acc_norm", "0.6323", None, 25),
        ("DPO (sigmoid, β=0.05)", "arc_challenge", "acc_norm", "0.6544 ± 0.0139", 0.0139, 25),
        ("NCA (nca_pair, β=0.10)", "arc_challenge", "acc_norm", "0.6775 ± 0.0137", 0.0137, 25),
        ("This adapter (NCA + hard-margin)", "arc_challenge", "acc_norm", "0.6834 ± 0.0136", 0.0136, 25),
        ("Likra paper (independent pipeline, reference only)", "arc_challenge", "acc_norm", "0.6630", None, 25),
    ]
    assert [c.this_model for c in claims] == [False, False, False, False, True, False]
    assert [c.baseline for c in claims] == [True, False, False, False, False, False]
    assert [c.reference_only for c in claims] == [False] * 5 + [True]
    assert [c.value_text for c in claims_from_card(p) if c.derived] == ["+1.80 pp", "+4.01 pp", "+6.32 pp", "+6.91 pp"]
    assert pins_dict(p.pins) == {"lm-eval": "==0.4.5", "torch": "==2.5.1", "transformers": "==4.49.0", "peft": "==0.15.2", "bitsandbytes": "==0.43.3"}
    assert p.tested_on == "A100 40 GB"
    assert [b.key for b in p.bibtex] == ["chen2024nca", "dettmers2023qlora", "clark2018arc"]
    assert not any(s.title.startswith("Model tree") for s in p.sections)  # page chrome is cut off


@needs_seeds
def test_seed000_draft_matches_the_example_manifest():
    """The draft of seed 000 agrees with examples/seed000/hubkit.yaml, which a person wrote from
    the same card, on every claim number and on the eval setup."""
    import yaml

    example = yaml.safe_load((REPO / "examples" / "seed000" / "hubkit.yaml").read_text())
    draft = manifest_draft(parse_card(seed("000"))).manifest
    got = [(c["value"], c.get("stderr"), c.get("num_fewshot"), c["metric"], c.get("baseline", False), c.get("reference_only", False)) for c in draft["claims"]]
    want = [(c["value"], c.get("stderr"), c.get("num_fewshot"), c["metric"], c.get("baseline", False), c.get("reference_only", False)) for c in example["claims"]]
    assert got == want
    (setup,) = draft["evals"].values()
    for key in ("tasks", "num_fewshot", "metrics", "batch_size", "strategies", "pins", "model_args", "command"):
        assert setup[key] == example["evals"]["arc25"][key], key
    assert [c["bibtex"] for c in draft["project"]["citations"]] == [c["bibtex"] for c in example["project"]["citations"]]


@needs_seeds
def test_seed001_comparison_table_columns_are_the_models():
    claims = claims_from_card(parse_card(seed("001")))
    assert {c.orientation for c in claims} == {"models-as-columns"}
    assert [(c.subject, c.this_model, c.task, c.value_text) for c in claims] == [
        ("no-SFT", False, "Preference pairs", "2,307"), ("KL-SFT (this model)", True, "Preference pairs", "5,886"),
        ("no-SFT", False, "Final DPO loss", "0.218"), ("KL-SFT (this model)", True, "Final DPO loss", "0.091"),
        ("no-SFT", False, "Rewards accuracy", "95%"), ("KL-SFT (this model)", True, "Rewards accuracy", "98.1%"),
        ("no-SFT", False, "Mean chosen score", "0.882"), ("KL-SFT (this model)", True, "Mean chosen score", "0.906"),
    ]


@needs_seeds
def test_seed002_report_matrix():
    p = parse_card(seed("002"))
    assert p.title == "Cross-Model LoRA Adapter Translation — Round 4"
    claims = claims_from_card(p)
    assert len(claims) == 6 * 10  # the 'usable' column holds True/False, not numbers
    assert [(c.subject, c.task, c.domain, c.value_text, c.derived, c.baseline) for c in claims[:3]] == [
        ("base_Y", "gsm_hard", "math", "0.063", False, True), ("mean", "gsm_hard", "math", "0.057", False, False),
        ("global_ridge", "gsm_hard", "math", "0.060", False, False),
    ]
    assert {c.subject for c in claims if c.derived} == {"oracle_minus_base_pp", "gap_recovered"}
    (arc_oracle,) = rows(claims, task="arc_challenge", subject="oracle")
    assert (arc_oracle.value_text, arc_oracle.domain, arc_oracle.metric_guessed) == ("0.722", "science", True)


# -- the hand-written shapes ------------------------------------------------------------------------------


def test_seed000_shape_readme():
    p = card("seed000-shape-4bit-peft-command.md")
    assert (p.license, p.base_models, p.library_name) == ("apache-2.0", ["golfoscar/mistral-7b-sft-arc"], "peft")
    claims = claims_from_card(p)
    own = [c for c in claims if c.this_model]
    assert [(c.value_text, c.value, c.stderr, c.derived) for c in own] == [("**0.6834 ± 0.0136**", 0.6834, 0.0136, False), ("**+6.91 pp**", 6.91, None, True)]
    (doc,) = p.commands
    cmd = doc.command
    assert (doc.location.kind, doc.location.lang, doc.section) == ("fenced", "bash", "Reproducing 0.6834")
    assert cmd.model_args.load_in_4bit is True and cmd.model_args.bnb_4bit_use_double_quant is True and cmd.model_args.bnb_4bit_quant_type == "nf4"
    draft = manifest_draft(p)
    (setup,) = draft.manifest["evals"].values()
    assert setup["strategies"] == ["4bit-lora", "merged-fp16"] and setup["metrics"] == ["acc_norm"]
    (mine,) = [c for c in draft.manifest["claims"] if c.get("setup")]
    (art,) = draft.manifest["artifacts"]  # the card's own model, as an artifact
    assert (mine["subject"], mine["value"], mine["stderr"]) == (art, 0.6834, 0.0136)
    assert draft.manifest["project"]["limitations"][2] == "English only."


def test_model_index_only_fixture():
    p = card("model-index-only-adapter.md")
    claims = claims_from_card(p)
    assert simple(claims) == [
        ("example-org/mistral-7b-arc-lora", "arc_challenge", "acc", "0.6391", None, 25),
        ("example-org/mistral-7b-arc-lora", "arc_challenge", "acc_norm", "0.6834", None, 25),
        ("example-org/mistral-7b-arc-lora", "mmlu", "acc", "0.6212", None, 5),
        ("example-org/mistral-7b-arc-lora", "gsm8k", "exact_match", "45.72 ± 1.37", 1.37, 5),
    ]
    draft = manifest_draft(p)
    # two metrics of one task: a report card shows one, so the draft keeps them in a section too
    (extra,) = [s for s in draft.manifest["sections"] if s["title"] == "Results in the card's metadata"]
    assert "0.6391" in extra["body"] and "0.6834" in extra["body"]


def test_chat_template_fixture_claims_command_and_no_token_anywhere():
    text = read(FIXTURES / "chat-template-gen-kwargs-claims.md")
    token = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
    assert token in text
    p = parse_card(text)
    claims = claims_from_card(p)
    assert [(c.subject, c.this_model, c.task, c.metric, c.value_text, c.value, c.unit, c.stderr, c.num_fewshot) for c in claims] == [
        ("Llama-3.1-8B-Instruct", False, "gsm8k", "exact_match", "76.88 ± 1.16", 76.88, None, 1.16, 5),
        ("Llama-3.1-8B-Instruct", False, "ifeval", "prompt_level_strict_acc", "71.53%", 71.53, "%", None, None),
        ("Llama-3.1-8B-Instruct", False, "mmlu", "acc", "68.21", 68.21, None, None, 5),
        ("Llama-3.1-8B-Math-LoRA (ours)", True, "gsm8k", "exact_match", "82.41 ± 1.05", 82.41, None, 1.05, 5),
        ("Llama-3.1-8B-Math-LoRA (ours)", True, "ifeval", "prompt_level_strict_acc", "69.87%", 69.87, "%", None, None),
        ("Llama-3.1-8B-Math-LoRA (ours)", True, "mmlu", "acc", "possibly contaminated (67.94)", 67.94, None, None, 5),
    ]
    assert [c.metric_guessed for c in claims] == [False, False, True, False, False, True]
    assert p.tables[0].note == "*GSM8K uses the `strict-match` filter; numbers are percentages.*"
    (doc,) = p.commands
    cmd = doc.command
    assert cmd.env == {"HF_TOKEN": "***"} and cmd.command.startswith("HF_TOKEN=*** lm_eval --model hf")
    assert (cmd.apply_chat_template, cmd.fewshot_as_multiturn, cmd.batch_size, cmd.seed) == (True, True, "auto:4", [1234] * 4)
    assert cmd.gen_kwargs == {"temperature": "0", "max_gen_toks": "512", "do_sample": "False"}
    assert cmd.model_args.revision == "0e9e39f249a16976918f6564b8830bc894c89659"
    assert pins_dict(p.pins) == {"lm-eval": "==0.4.8", "transformers": "==4.51.3", "peft": "==0.15.2", "torch": "==2.6.0"}
    draft = manifest_draft(p)
    (setup,) = draft.manifest["evals"].values()
    assert setup["tasks"] == ["gsm8k", "ifeval"] and setup["strategies"] == ["bf16-lora", "merged-fp16"]
    assert any("--apply_chat_template" in t for t in draft.todo) and any("--gen_kwargs" in t for t in draft.todo)
    # the claimed value with words keeps them; the numeric ones are numbers
    (art,) = draft.manifest["artifacts"]
    claims = {(c["subject"], c["task"]): c for c in draft.manifest["claims"]}
    assert claims[(art, "mmlu")]["value"] == 67.94 and claims[(art, "mmlu")]["display"] == "possibly contaminated (67.94)"
    assert claims[(art, "gsm8k")]["value"] == 82.41
    assert claims[(art, "ifeval")]["value"] == 69.87 and claims[(art, "ifeval")]["unit"] == "%"
    for blob in (p.model_dump_json(), repr(claims), repr(draft), render_draft_yaml(draft)):
        assert token not in blob


# -- helpers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "display, expected",
    [
        ("ARC (25-shot)", ("arc_challenge", True)),
        ("AI2 Reasoning Challenge (25-Shot)", ("arc_challenge", True)),
        ("ARC-Challenge", ("arc_challenge", True)),
        ("HellaSwag (10-shot)", ("hellaswag", True)),
        ("TruthfulQA (MC2) <br>10-shot", ("truthfulqa_mc2", True)),
        ("GSM8k (5-shot)", ("gsm8k", True)),
        ("GSM8K CoT <br>8-shot", ("gsm8k_cot", True)),
        ("GSM8K (PAL)", ("GSM8K (PAL)", False)),
        ("HumanEval+", ("humaneval_plus", True)),
        ("Winogrande (5-shot)", ("winogrande", True)),
        ("MT-Bench", ("MT-Bench", False)),
    ],
)
def test_map_task(display, expected):
    assert map_task(display) == expected


def test_task_in_a_title_and_values():
    assert find_task_in_text("Performance — ARC-Challenge 25-shot (acc_norm)") == "arc_challenge"
    assert find_task_in_text("Training data") is None
    assert parse_value("0.6544 ± 0.0139") == (0.6544, None, 0.0139)
    assert parse_value("125/175 (71.43%)") == (71.43, "%", None)
    assert parse_value("**+6.91 pp**") == (6.91, "pp", None)
    assert parse_value("2,307") == (2307.0, None, None)
    for empty in ("-", "", "N/A", "7B"):
        assert parse_value(empty) is None


def test_read_card_keeps_line_endings_and_fails_typed(tmp_path):
    from hubkit.errors import CardError

    p = read_card(REAL / "phi-3-mini-4k-instruct.md")
    assert p.line_endings == "crlf" and p.license == "mit"
    with pytest.raises(CardError) as exc:
        read_card(tmp_path / "missing.md")
    assert "README.md" in exc.value.hint
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CardError, match="not UTF-8"):
        read_card(tmp_path / "latin1.md")
