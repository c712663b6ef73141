"""`hubkit import` (a manifest drafted from a real card) and `hubkit init --from-command`, as a
user runs them: real public cards (tests/data/real/cards, sources in SOURCES.md) and the seed's
documented command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from hubkit.cli import main
from hubkit.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real" / "cards"
SEED_COMMAND = (REPO / "examples" / "seed000" / "hubkit.yaml")
CARDS = ["zephyr-7b-beta.md", "phi-3-mini-4k-instruct.md", "mn-12b-starcannon-v2-mergekit-ties.md", "thebloke-llama-2-7b-chat-gguf.md", "neuralhermes-2.5-mistral-7b.md"]


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in re.findall(r"(?<![\w.])\d[\d,]*\.\d+(?![\w.])", text)}


@pytest.mark.parametrize("name", CARDS)
def test_import_a_real_card_then_render_it(name, tmp_path, capsys):
    """The draft validates, renders, passes --check, and its card shows every decimal number the
    original's results tables and model-index state."""
    out = tmp_path / "hubkit.yaml"
    assert main(["import", str(REAL / name), "-o", str(out)]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "TODO:" in captured.err and "Traceback" not in captured.err
    m = load_manifest(out)
    assert main(["card", "-m", str(out)]) == 0
    assert main(["card", "-m", str(out), "--check"]) == 0, capsys.readouterr().err
    rendered = "\n".join(p.read_text() for p in (tmp_path / "cards").rglob("README.md"))
    from hubkit.cardparse import claims_from_card, parse_card

    parsed = parse_card((REAL / name).read_text(encoding="utf-8"))
    claimed = {c.value_text for c in claims_from_card(parsed)}
    wanted = set().union(*(numbers(t) for t in claimed)) if claimed else set()
    missing = {n for n in wanted if n not in rendered.replace(",", "")}
    assert not missing, f"{name}: numbers of the original missing from the rendered card: {sorted(missing)[:10]}"
    assert m.project.name


def test_import_refuses_to_overwrite_and_names_bad_sources(tmp_path, capsys):
    out = tmp_path / "hubkit.yaml"
    out.write_text("mine\n")
    assert main(["import", str(REAL / "zephyr-7b-beta.md"), "-o", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err and out.read_text() == "mine\n"
    assert main(["import", str(tmp_path / "nope.md"), "-o", str(tmp_path / "x.yaml")]) == 1
    assert "no such file, folder or Hub repo id" in capsys.readouterr().err


def test_init_from_the_seed_command_gives_its_setup(tmp_path, capsys):
    seed = yaml.safe_load(SEED_COMMAND.read_text())["evals"]["arc25"]
    out = tmp_path / "hubkit.yaml"
    assert main(["init", "--from-command", seed["command"], "-o", str(out), "--setup", "arc25"]) == 0
    setup = load_manifest(out).evals["arc25"]
    assert setup.tasks == ["arc_challenge"] and setup.num_fewshot == 25 and setup.batch_size == 64
    assert setup.strategies == ["4bit-lora", "merged-fp16"]  # the card's 4-bit + peft load path first
    assert setup.model_args["bnb_4bit_quant_type"] == "nf4" and setup.command == seed["command"]
    art = next(iter(load_manifest(out).artifacts.values()))
    assert art.kind == "adapter" and art.repo_id == "golfoscar/mistral-7b-v0.1-nca-arc-lora" and art.base_model == "golfoscar/mistral-7b-sft-arc"
    # into an existing manifest: the block to paste, the file untouched
    before = out.read_text()
    capsys.readouterr()
    assert main(["init", "--from-command", seed["command"], "-o", str(out), "--setup", "again"]) == 0
    printed = capsys.readouterr()
    assert out.read_text() == before and yaml.safe_load(printed.out)["again"]["num_fewshot"] == 25
    assert "paste the setup above under `evals:`" in printed.err
    assert main(["init", "--from-command", "echo hello", "-o", str(tmp_path / "y.yaml")]) != 0
    assert "Traceback" not in capsys.readouterr().err
