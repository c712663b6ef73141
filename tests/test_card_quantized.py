"""The quantized card: a GGUF folder's facts, its files table and usage, each only where true;
facts files read back (from `hubkit inspect --json`, or written by hand and labelled so); the
upstream card kept as a section. Real GGUF files written with llama.cpp's `gguf` package."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from gguf_fixture import CONTEXT, FFN, HEADS, HIDDEN, KV_HEADS, LAYERS, RMS_EPS, ROPE_THETA, VOCAB, random_weights, write_tiny_llama
from huggingface_hub import ModelCard

from hubkit.card import check_card, render_card
from hubkit.cli import main
from hubkit.errors import CardError
from hubkit.gguf import name_quant_label
from hubkit.manifest import load_manifest

REAL_CARDS = Path(__file__).parent / "data" / "real" / "cards"
REPO = "me/tiny-llama-GGUF"


def table_rows(text: str, first_header: str) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the markdown table whose first column is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return header, rows


def all_cells(text: str) -> list[str]:
    cells = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells += [c.strip() for c in line.strip().strip("|").split("|")]
    return cells


def headings(text: str) -> list[str]:
    """Markdown headings outside code fences (a prompt format may show '## Charname' in one)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.append(line)
    return out


def section(text: str, heading: str) -> str:
    """The text under `heading`, up to the card's next level-2 heading."""
    return text.split(heading, 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.DOTALL)


def write_manifest(root: Path, artifacts: dict, datasets: dict | None = None) -> Path:
    data = {
        "project": {"name": "Tiny Llama", "license": "apache-2.0", "summary": "A tiny llama in GGUF."},
        "artifacts": artifacts,
        "datasets": datasets or {},
    }
    path = root / "hubkit.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


OTHER = {"kind": "merged", "path": "other", "repo_id": "me/other", "datasets": ["other"]}


def quantized(**extra) -> dict:
    return {"kind": "quantized", "path": "gguf", "repo_id": REPO, "base_model": "me/tiny-llama", **extra}


@pytest.fixture
def project(tmp_path):
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    for q in ("F32", "F16", "Q8_0"):
        write_tiny_llama(gguf_dir / f"tiny-{q}.gguf", q)
    write_tiny_llama(gguf_dir / "tiny-split-Q8_0.gguf", "Q8_0", split_max_tensors=8)
    datasets = {"wiki": {"hub_id": "wikimedia/wikipedia", "rows": 1000, "license": "cc-by-sa-3.0"}, "other": {"hub_id": "someone/else"}}
    # "other" is another artifact's data: it has no place on this card
    write_manifest(tmp_path, {"tiny-gguf": quantized(datasets=["wiki"]), "other-model": OTHER}, datasets)
    return tmp_path


def card_of(root: Path, name: str = "tiny-gguf"):
    m = load_manifest(root / "hubkit.yaml")
    return m, render_card(m, name, runs_dir=root / "runs")


def test_card_states_every_fact_read_from_the_files(project):
    from hubkit.inspection import inspect_path

    m, card = card_of(project)
    text = card.text
    facts = inspect_path(project / "gguf", hash_files=False)
    params = sum(w.size for w in random_weights().values())

    assert "| architecture | llama (GGUF) |" in text
    assert f"| parameters | {params:,} ({params / 1e3:.2f} K) |" in text
    assert f"| context length | {CONTEXT:,} tokens |" in text
    assert "| files | 4 GGUF model files (6 files with the split parts) |" in text
    assert "| tokenizer | in every file |" in text and "| chat template | none |" in text
    assert "Read from the files (the GGUF headers), not typed by hand." in text

    header, rows = table_rows(text, "file")
    assert header == ["file", "quant type", "bits per weight", "size", "tensors by type"]
    by_file = {re.match(r"\[([^\]]+)\]", r[0])[1]: r for r in rows}
    sizes = {}
    for model in facts.models:
        row = by_file[model.path]
        assert row[0].startswith(f"[{model.path}](https://huggingface.co/{REPO}/blob/main/{model.path})")
        size = sum((project / "gguf" / p).stat().st_size for p in model.parts)
        assert row[1] == model.quant_type
        assert row[2] == f"{8 * model.tensor_bytes / params:.2f}"
        assert row[3] == (f"{size / 1e3:.1f} KB")
        assert row[4] == ", ".join(f"{t} ×{n}" for t, n in model.tensor_types.items())
        sizes[model.path] = size
    assert [re.match(r"\[([^\]]+)\]", r[0])[1] for r in rows] == sorted(sizes, key=lambda p: -sizes[p])  # biggest first
    assert by_file["tiny-split-Q8_0-00001-of-00003.gguf"][0].endswith("+ 2 more parts")
    assert "8 × the bytes of all tensors ÷ the parameter count" in text
    assert "" not in all_cells(text.split("## Model")[1])

    # usage: every block, each naming the smallest unsplit file (no Q4_K_M here)
    bash = "\n".join(code_blocks(text, "bash"))
    assert f"llama-cli --hf-repo {REPO} --hf-file tiny-Q8_0.gguf -p" in bash
    assert f"llama-server --hf-repo {REPO} --hf-file tiny-Q8_0.gguf" in bash
    assert f"hf download {REPO} tiny-Q8_0.gguf --local-dir ." in bash and "llama-cli -m tiny-Q8_0.gguf" in bash
    assert "The file carries no chat template: these commands complete plain text." in text
    # two files are labelled Q8_0 (one split), so the tag is the full file name, which always works
    assert f"ollama run hf.co/{REPO}:tiny-Q8_0.gguf" in bash
    assert "The other files by their tags: `F32`, `F16`." in text
    assert "not `tiny-split-Q8_0-00001-of-00003.gguf` (split into 3 parts)" in text
    (python,) = code_blocks(text, "python")
    assert f'AutoModelForCausalLM.from_pretrained("{REPO}", gguf_file="tiny-Q8_0.gguf")' in python
    assert f'AutoTokenizer.from_pretrained("{REPO}", gguf_file="tiny-Q8_0.gguf")' in python
    assert "Its GGUF loader cannot read `tiny-split-Q8_0-00001-of-00003.gguf` (split)." in text

    # the artifact's own training data only
    assert "| wiki | 1,000 rows | cc-by-sa-3.0 | wikimedia/wikipedia |" in text and "someone/else" not in text.split("---", 2)[2]
    assert card.metadata["base_model_relation"] == "quantized" and "library_name" not in card.metadata
    assert check_card(m, card) == []


def test_inspect_json_facts_render_the_same_card(project, capsys):
    """Without the files, the facts `hubkit inspect --json` wrote give the same card, saying where
    the facts were read and kept."""
    _, from_files = card_of(project)
    assert main(["inspect", str(project / "gguf"), "--json", "--no-hash"]) == 0
    (project / "tiny.facts.json").write_text(capsys.readouterr().out)
    shutil.rmtree(project / "gguf")
    write_manifest(project, {"tiny-gguf": quantized(datasets=["wiki"], facts="tiny.facts.json"), "other-model": OTHER}, {"wiki": {"hub_id": "wikimedia/wikipedia", "rows": 1000, "license": "cc-by-sa-3.0"}, "other": {"hub_id": "someone/else"}})
    _, from_json = card_of(project)
    said = re.search(r"Read from the files \(the GGUF headers\) by `hubkit inspect` \(hubkit [^)]+\) and kept in `tiny.facts.json`: the files were not at hand when this card was rendered.", from_json.text)
    assert said
    strip = lambda t: re.sub(r"<!-- hubkit:inputs .*", "", t)  # noqa: E731 (the manifest changed: so does its digest)
    assert strip(from_json.text.replace(said[0], "Read from the files (the GGUF headers), not typed by hand.")) == strip(from_files.text)


HAND_WRITTEN = {
    "kind": "gguf",
    "architecture": "llama",
    "params": "6.74B",
    "context_length": 4096,
    "models": [
        {"path": "llama-2-7b-chat.Q4_K_M.gguf", "quant_type": "Q4_K_M", "size": 4081004224},
        {"path": "llama-2-7b-chat.Q8_0.gguf", "quant_type": "Q8_0", "size": 7161089728},
    ],
}


def test_hand_written_facts_are_stated_by_the_author(tmp_path):
    (tmp_path / "facts.json").write_text(json.dumps(HAND_WRITTEN))
    write_manifest(tmp_path, {"tiny-gguf": quantized(facts="facts.json")})
    m, card = card_of(tmp_path)
    text = card.text
    assert "Stated by the author in `facts.json`, not read from the files." in text
    assert "Read from the files" not in text
    assert "| parameters | about 6.74 B |" in text
    header, rows = table_rows(text, "file")
    assert header == ["file", "quant type", "bits per weight", "size"]  # no tensor table: no such column
    assert rows[0][1:] == ["Q8_0", f"≈ {8 * 7161089728 / 6.74e9:.2f}", "7.16 GB"]
    assert rows[1][1:] == ["Q4_K_M", f"≈ {8 * 4081004224 / 6.74e9:.2f}", "4.08 GB"]
    assert "8 × the file size ÷ the stated parameter count" in text and "The parameter count is itself a rounded figure." in text
    assert "tokenizer |" not in text and "chat template |" not in text  # not stated: not shown
    assert "" not in all_cells(text)
    # Q4_K_M is the file the usage names; transformers needs tensor types nobody stated
    assert f"ollama run hf.co/{REPO}:Q4_K_M" in text and "`Q8_0`" in text
    assert f"llama-cli --hf-repo {REPO} --hf-file llama-2-7b-chat.Q4_K_M.gguf" in text
    assert "### transformers" not in text
    assert "chat template" not in text.split("## Usage")[1]  # not stated: no claim either way
    assert check_card(m, card) == []


def test_hand_written_facts_without_params(tmp_path):
    facts = {**HAND_WRITTEN, "models": [dict(x) for x in HAND_WRITTEN["models"]]}
    del facts["params"]
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    write_manifest(tmp_path, {"tiny-gguf": quantized(facts="facts.json")})
    _, card = card_of(tmp_path)
    assert "| parameters |" not in card.text
    header, rows = table_rows(card.text, "file")
    assert header == ["file", "quant type", "size"]  # no parameter count: no bits per weight
    assert "" not in all_cells(card.text)


def test_hand_written_checkpoint_facts_have_no_blank_rows(tmp_path):
    """The issue's card: a facts file with a parameter count and nothing else rendered blank cells
    and 'shards 0' under 'Read from the files'."""
    (tmp_path / "facts.json").write_text(json.dumps({"kind": "checkpoint", "params": "7B"}))
    write_manifest(tmp_path, {"merged": {"kind": "merged", "path": "merged", "repo_id": "me/merged", "base_model": "me/base", "facts": "facts.json"}})
    _, card = card_of(tmp_path, "merged")
    specs = card.text.split("## Checkpoint")[1].split("\n## ")[0]
    assert "| parameters | about 7.00 B |" in specs
    assert "shards" not in specs and "architecture" not in specs and "" not in all_cells(specs)
    assert "Stated by the author in `facts.json`, not read from the files." in specs


@pytest.mark.parametrize(
    "params, row",
    [
        ("7B", "about 7.00 B"),
        ("6.7e9", "about 6.70 B"),
        (6.7e9, "about 6.70 B"),  # a JSON number in scientific notation is a rounded figure too
        ("125M", "about 125.00 M"),
        (6738415616, "6,738,415,616 (6.74 B)"),
        ("6,738,415,616", "6,738,415,616 (6.74 B)"),
    ],
)
def test_hand_written_params_exact_or_approximate(tmp_path, params, row):
    (tmp_path / "facts.json").write_text(json.dumps({"kind": "checkpoint", "params": params}))
    write_manifest(tmp_path, {"merged": {"kind": "merged", "path": "merged", "repo_id": "me/merged", "base_model": "me/base", "facts": "facts.json"}})
    _, card = card_of(tmp_path, "merged")
    assert f"| parameters | {row} |" in card.text


def test_bad_field_is_one_line_naming_file_and_field(tmp_path, capsys):
    bad = {**HAND_WRITTEN, "models": [{"path": "x.gguf", "quant": "Q4_K_M"}]}
    (tmp_path / "facts.json").write_text(json.dumps(bad))
    manifest = write_manifest(tmp_path, {"tiny-gguf": quantized(facts="facts.json")})
    with pytest.raises(CardError) as info:
        card_of(tmp_path)
    assert str(info.value) == "facts.json: models.0.quant: unknown field (did you mean 'quant_type'?)"
    code = main(["card", "-m", str(manifest), "--out", str(tmp_path / "cards")])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert err.splitlines()[0] == "error: facts.json: models.0.quant: unknown field (did you mean 'quant_type'?)"


@pytest.mark.parametrize(
    "facts, message",
    [
        ({"kind": "gguf", "params": "seven", "models": [{"path": "a.gguf"}]}, 'facts.json: params: expected a parameter count like 6738415616 or "6.74B", got "seven"'),
        ({"kind": "gguf", "models": [{"path": "a.gguf", "size": "big"}]}, 'facts.json: models.0.size: expected an integer, got "big"'),
        ({"kind": "gguf", "models": []}, "facts.json: models: needs at least one entry"),
        ({"kind": "checkpoint", "params": 7_000_000_000, "inspected_by": "hubkit 0.1.0"}, "facts.json: says it was written by hubkit 0.1.0 (inspected_by) but lacks architectures, dtypes, shards"),
        ({"kind": "safetensors"}, 'facts.json: kind: expected one of \'adapter\', \'checkpoint\', \'gguf\', got "safetensors"'),
    ],
)
def test_facts_schema_errors(tmp_path, facts, message):
    (tmp_path / "facts.json").write_text(json.dumps(facts))
    write_manifest(tmp_path, {"tiny-gguf": quantized(facts="facts.json")})
    with pytest.raises(CardError) as info:
        card_of(tmp_path)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_missing_and_broken_facts_files(tmp_path):
    write_manifest(tmp_path, {"tiny-gguf": quantized(facts="facts.json")})
    with pytest.raises(CardError) as info:
        card_of(tmp_path)
    assert str(info.value) == "facts.json: facts file not found"
    (tmp_path / "facts.json").write_text("{\"kind\": ")
    with pytest.raises(CardError) as info:
        card_of(tmp_path)
    assert str(info.value).startswith("facts.json: not valid JSON (line 1, column 10)")


def test_no_repo_id_keeps_only_local_usage(project):
    write_manifest(project, {"tiny-gguf": {"kind": "quantized", "path": "gguf", "base_model": "me/tiny-llama"}})
    _, card = card_of(project)
    assert "--hf-repo" not in card.text and "ollama" not in card.text.lower() and "hf download" not in card.text
    assert "llama-cli -m tiny-Q8_0.gguf" in card.text
    assert "[tiny-F32.gguf](" not in card.text and "| `tiny-F32.gguf` |" in card.text


def test_split_only_folder(tmp_path):
    (tmp_path / "gguf").mkdir()
    write_tiny_llama(tmp_path / "gguf" / "big.gguf", "F16", split_max_tensors=8)
    write_manifest(tmp_path, {"tiny-gguf": quantized()})
    _, card = card_of(tmp_path)
    text = card.text
    assert f"llama-cli --hf-repo {REPO} --hf-file big-00001-of-00003.gguf" in text
    assert f'hf download {REPO} --include "big-*-of-00003.gguf" --local-dir .' in text
    assert "`big-00001-of-00003.gguf` is the first of 3 parts; llama.cpp finds the others next to it." in text
    assert "ollama" not in text.lower() and "### transformers" not in text
    assert "The other files in the table" not in text


def test_chat_template_projector_and_unknown_architecture(tmp_path):
    d = tmp_path / "gguf"
    d.mkdir()
    write_tiny_llama(d / "chat-Q8_0.gguf", "Q8_0", chat_template="{{ messages }}")
    write_tiny_llama(d / "mmproj-F16.gguf", "F16", arch="clip", tokenizer=False)
    write_tiny_llama(d / "other-F16.gguf", "F16", arch="phi2")
    write_manifest(tmp_path, {"tiny-gguf": quantized()})
    _, card = card_of(tmp_path)
    text = card.text
    assert "| F16 (vision projector) |" in text
    assert f"llama-cli --hf-repo {REPO} --hf-file chat-Q8_0.gguf\n" in text  # no -p: a conversation
    assert "The file carries its chat template, so `llama-cli` opens a conversation with it." in text
    assert "`mmproj-F16.gguf` is a vision projector, to pass with `--mmproj`" in text
    assert "mmproj-F16" not in text.split("### Ollama")[1]
    assert "Its GGUF loader cannot read `other-F16.gguf` (architecture phi2)." in text
    assert "| chat template | in 1 of 3 files |" in text and "| tokenizer | in 2 of 3 files |" in text
    assert "| architecture |" not in text  # the two language models differ (llama, phi2): no single one to state


def test_no_datasets_no_training_data(project):
    write_manifest(project, {"tiny-gguf": quantized(), "other-model": OTHER}, {"other": {"hub_id": "someone/else"}})
    _, card = card_of(project)
    assert "## Training data" not in card.text and "datasets" not in card.metadata


def test_upstream_artifact_card_is_kept_as_a_section(project):
    """A quantization of another artifact of the manifest carries that artifact's card, as hubkit
    renders it, under its own heading, without a second front matter or hubkit's markers."""
    (project / "merged.facts.json").write_text(json.dumps({"kind": "checkpoint", "architectures": ["LlamaForCausalLM"], "params": 86336}))
    write_manifest(project, {
        "tiny-gguf": quantized(),
        "tiny": {"kind": "merged", "path": "merged", "repo_id": "me/tiny-llama", "base_model": "me/base", "facts": "merged.facts.json", "title": "Tiny Llama merged"},
    })
    m, card = card_of(project)
    text = card.text
    upstream = section(text, "## Original model card: me/tiny-llama")
    assert "as hubkit renders it from the same manifest" in upstream
    assert "### Tiny Llama merged" in upstream and "#### Checkpoint" in upstream
    # the embedded card's headings sit under this one: the card's own level-2 headings are its parts
    assert [h for h in headings(text) if h.startswith("## ")] == ["## Model", "## Files", "## Usage", "## Original model card: me/tiny-llama", "## License"]
    assert "| architecture | LlamaForCausalLM |" in upstream
    assert text.count("hubkit:inputs") == 1 and len(re.findall(r"^---$", text, re.MULTILINE)) == 2  # one front matter
    assert ModelCard(text).data.to_dict()["base_model"] == "me/tiny-llama"
    assert check_card(m, card) == []
    # the merged card itself does not embed anything
    assert "Original model card" not in render_card(m, "tiny", runs_dir=project / "runs").text


@pytest.mark.parametrize("source", ["llama-2-7b-chat.md", "augmental-remm-13b.md", "autotrain-twitter-spam-classifier.md"])
def test_upstream_readme_next_to_the_base_weights(project, source):
    """Real cards as the base model's README.md: CRLF line endings, several front-matter blocks,
    an empty line before the first `---`: the section keeps the text and drops the metadata."""
    base = project / "base"
    base.mkdir()
    shutil.copy(REAL_CARDS / source, base / "README.md")
    write_manifest(project, {"tiny-gguf": quantized(base_model_path="base")})
    m, card = card_of(project)
    upstream = section(card.text, "## Original model card: me/tiny-llama")
    original = (REAL_CARDS / source).read_text(encoding="utf-8").replace("\r\n", "\n")
    body = original.split("\n---\n")[-1] if source != "llama-2-7b-chat.md" else original.split("---\n", 2)[2]
    first_prose = next(line for line in body.splitlines() if len(line) > 40 and not line.startswith(("#", "|", "<", "-", "!", "[")))
    assert first_prose in upstream
    assert "\r" not in upstream and "\n---\n" not in upstream and "license:" not in upstream
    assert headings(upstream) and not [h for h in headings(upstream) if re.match(r"#{1,2} ", h)]  # under this card's section
    own = [h for h in headings(card.text) if re.match(r"#{1,2} ", h)]
    assert own == ["# Tiny Llama", "## Model", "## Files", "## Usage", "## Original model card: me/tiny-llama", "## License"]
    assert ModelCard(card.text).data.to_dict()["license"] == "apache-2.0"
    assert check_card(m, card) == []


@pytest.mark.parametrize("card_name, name_col, quant_col", [("thebloke-llama-2-7b-chat-gguf.md", "Name", "Quant method"), ("bartowski-llama-3.1-8b-instruct-gguf.md", "Filename", "Quant type")])
def test_reference_cards_files_and_tags(card_name, name_col, quant_col):
    """The two real GGUF cards link each file as https://huggingface.co/REPO/blob/main/FILE, the
    form the files table uses, and state a quant type that is the label the Hub (and so
    `ollama run hf.co/REPO:TAG`) reads from the file name."""
    text = (REAL_CARDS / card_name).read_text(encoding="utf-8").replace("\r\n", "\n")
    header, rows = table_rows(text, name_col)
    assert {"size", "quant"} <= {w for h in header for w in ("size", "quant") if w in h.lower()}
    qi = header.index(quant_col)
    labels = []
    for row in rows:
        m = re.match(r"\[([^\]]+)\]\(https://huggingface.co/([^/]+/[^/]+)/blob/main/\1\)", row[0])
        assert m, row[0]
        label = name_quant_label(m[1])
        assert label == row[qi].upper(), (m[1], row[qi])
        labels.append(label)
    assert len(set(labels)) == len(labels)  # unique: each file is reachable by its tag


def test_transformers_block_runs_and_loads_the_weights(tmp_path):
    """The transformers code on the card, pointed at the local folder, loads the GGUF files into the
    model the test built: the F32 file gives its logits, the Q8_0 file close to them."""
    import numpy as np
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    weights = random_weights(seed=1)
    config = LlamaConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=FFN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS, max_position_embeddings=CONTEXT, rms_norm_eps=RMS_EPS, rope_theta=ROPE_THETA, tie_word_embeddings=False,
    )
    reference = LlamaForCausalLM(config).eval()
    reference.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
    (tmp_path / "gguf").mkdir()
    for q in ("F32", "Q8_0"):
        write_tiny_llama(tmp_path / "gguf" / f"tiny-{q}.gguf", q, weights=weights)
    write_manifest(tmp_path, {"tiny-gguf": quantized()})
    _, card = card_of(tmp_path)
    (python,) = code_blocks(card.text, "python")
    ids = torch.tensor([[1, 70, 71, 72, 90, 91, 5]])
    with torch.no_grad():
        expected = reference(ids).logits
    for name, atol in (("tiny-Q8_0.gguf", 0.05), ("tiny-F32.gguf", 1e-5)):
        code = python.replace(f'"{REPO}"', repr(str(tmp_path / "gguf"))).replace('"tiny-Q8_0.gguf"', repr(name))
        scope: dict = {}
        exec(code, scope)  # the card's own lines
        assert scope["tokenizer"].vocab_size == VOCAB
        with torch.no_grad():
            got = scope["model"].eval()(ids).logits
        torch.testing.assert_close(got, expected, atol=atol, rtol=0)


def test_quantized_safetensors_checkpoint(tmp_path):
    """A GPTQ-style export (config.json with quantization_config, safetensors weights) is read as a
    checkpoint: its quantization is a row of the specs, and the usage is transformers' own loader."""
    import numpy as np
    from safetensors.numpy import save_file

    d = tmp_path / "gptq"
    d.mkdir()
    save_file({"model.embed_tokens.weight": np.zeros((8, 4), np.float16), "model.layers.0.q.qweight": np.zeros((4, 8), np.int32)}, str(d / "model.safetensors"))
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}}
    (d / "config.json").write_text(json.dumps(config))
    write_manifest(tmp_path, {"q": {"kind": "quantized", "path": "gptq", "repo_id": "me/tiny-GPTQ", "base_model": "me/tiny"}})
    m, card = card_of(tmp_path, "q")
    text = card.text
    assert "| quantization | gptq (4-bit, group size 128) |" in text
    assert "| parameters | 64 |" in text and "| weights dtype | F16, I32 |" in text and "| shards | 1 |" in text
    assert 'AutoModelForCausalLM.from_pretrained("me/tiny-GPTQ", device_map="auto")' in text
    assert "## Files" not in text and "llama.cpp" not in text and "ollama" not in text.lower()
    assert check_card(m, card) == []


def test_card_sections_order_and_replace_the_quantized_parts(project):
    """`card.sections` orders the quantized card's own parts like any other (files, usage, data,
    upstream); the author's usage replaces the generated one; a part left out is not rendered."""
    base = project / "base"
    base.mkdir()
    (base / "README.md").write_text("# Base\n\nThe base model's own words.\n")
    (project / "upstream.md").write_text("---\nlicense: mit\n---\n# The card we were given\n\nKept as written.\n")
    layout = {"sections": ["usage", "files", "data", "upstream"], "usage": "Run it with `my-runner`.", "upstream_file": "upstream.md"}
    write_manifest(project, {"tiny-gguf": quantized(datasets=["wiki"], base_model_path="base", card=layout)}, {"wiki": {"hub_id": "wikimedia/wikipedia", "rows": 10}})
    m, card = card_of(project)
    text = card.text
    own = [h for h in headings(text) if h.startswith("## ")]
    assert own == ["## Usage", "## Files", "## Training data", "## The upstream model's card"]
    assert section(text, "## Usage").strip() == "Run it with `my-runner`."
    assert "llama-cli" not in text and "## Model" not in text
    # the card the manifest names wins over the README next to the base weights
    assert "Kept as written." in text and "The base model's own words." not in text and "license: mit" not in text
    assert check_card(m, card) == []
    # with the default layout the generated usage comes back
    write_manifest(project, {"tiny-gguf": quantized()})
    assert "llama-cli --hf-repo" in section(card_of(project)[1].text, "## Usage")


def test_upstream_readme_edit_makes_the_card_stale(project, capsys):
    """The README next to the base weights is an input of the card: editing it makes the card on
    disk stale for `--check` (and so for publish)."""
    base = project / "base"
    base.mkdir()
    (base / "README.md").write_text("# Base\n\nFirst words.\n")
    manifest = write_manifest(project, {"tiny-gguf": quantized(base_model_path="base")})
    args = ["card", "-m", str(manifest), "--out", str(project / "cards")]
    assert main(args) == 0
    assert main([*args, "--check"]) == 0
    (base / "README.md").write_text("# Base\n\nOther words.\n")
    capsys.readouterr()
    assert main([*args, "--check"]) != 0
    assert "is stale" in capsys.readouterr().err
