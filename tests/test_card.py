"""hubkit card: seed cards re-rendered from manifests (golden files, every number checked against
the seed's text), Hub metadata that huggingface_hub parses back, lints, overrides, determinism."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from hubkit.card import check_card, render_card, render_cards, write_cards
from hubkit.cli import main
from hubkit.manifest import load_manifest

REPO = Path(__file__).resolve().parents[1]
# Every number each seed card states, extracted from ../shared/seeds/*.txt (the cards themselves
# are reference data outside the repo; CI runs on a clone without them).
SEED_NUMBERS = json.loads((Path(__file__).parent / "data" / "seed_numbers.json").read_text())
EXAMPLES = REPO / "examples"
UPDATE = os.environ.get("HUBKIT_UPDATE_GOLDEN") == "1"


def numbers_in(text: str) -> set[float]:
    """Every number in a text, as floats (thousands separators dropped; 1e-6 style kept)."""
    out = set()
    for tok in re.findall(r"\d[\d,]*(?:\.\d+)?(?:e-?\d+)?", text):
        try:
            out.add(round(float(tok.replace(",", "")), 6))
        except ValueError:
            pass
    return out


def table_cells(markdown: str) -> list[str]:
    cells = []
    for line in markdown.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells += [c.strip() for c in line.strip().strip("|").split("|")]
    return cells


@pytest.mark.parametrize("seed", ["seed000", "seed001", "seed002"])
def test_examples_match_golden_files(seed, tmp_path):
    m = load_manifest(EXAMPLES / seed / "hubkit.yaml")
    cards = render_cards(m)
    golden = EXAMPLES / seed / "cards"
    if UPDATE:
        write_cards(cards, golden)
    for card in cards:
        expected = (golden / card.name / "README.md").read_text(encoding="utf-8")
        assert card.text == expected, f"{seed}/{card.name} differs from its golden file (HUBKIT_UPDATE_GOLDEN=1 to regenerate)"


SEED_FACTS = {
    0: [
        "| Mistral-7B-v0.1 (pretrained) | 0.6143 |", "| Reference SFT | 0.6323 | +1.80 pp |",
        "0.6544 ± 0.0139 | +4.01 pp", "0.6775 ± 0.0137 | +6.32 pp", "0.6834 ± 0.0136 | +6.91 pp", "| 0.6630 |",
        "| rank r | 16 |", "| alpha | 32 ", "| dropout | 0.05 |", "| adapted modules | 224 |",
        "41,943,040 (41.94 M), 1.106 % of the 3.79 B base", "(7 types)",
        "| ARC-Challenge (train+val) | 3,378 pairs | cc-by-sa-4.0 |", "| OpenBookQA | 2,802 pairs | apache-2.0 |",
        "| ARC-Easy (train+val) | 1,878 pairs | cc-by-sa-4.0 |", "| QASC | 561 pairs | cc-by-4.0 |",
        "| nca_pair | 0.1 | 5e-6 | 1 | 8,619 | 269 |", "| nca_pair | 0.05 | 1e-6 | 2 | 2,155 | 122 |",
        "--tasks arc_challenge --num_fewshot 25 --batch_size 64", "pip install lm-eval==0.4.5",
        "load_in_4bit=True,bnb_4bit_quant_type=nf4,bnb_4bit_compute_dtype=bfloat16,bnb_4bit_use_double_quant=True",
        "| effective_batch_size | 32 |", "| warmup_ratio | 0.03 |", "| max_length | 512 |", "| seed | 42 |",
        "| peak_vram_gb | 5.51 |", "| eval_loss_start | 1.3088 |", "| eval_loss_end | 1.3008 |", "| wall_time_minutes | 78 |",
        "@inproceedings{chen2024nca,", "@article{dettmers2023qlora,", "@article{clark2018arc,",
    ],
    1: [
        "| no-SFT | 2,307 | 0.218 | 0.950 | 0.882 |", "| 5,886 | 0.091 | 0.981 | 0.906 |",
        "| kl-sft | epochs | 5 |", "|  | steps | 785 |", "|  | train_loss | 22.81 |", "| delta-dpo | r | 16 |",
        "|  | lora_alpha | 32 |", "|  | lora_dropout | 0.05 |", "|  | steps | 184 |", "|  | mean_rejected_score | -0.973 |",
        "|  | mean_delta | 1.879 |", "|  | generation_temperature | 0.7–1.1 |", "|  | pair_delta_threshold | 0.25 |",
        "|  | min_chosen_score | 0.2 |", "| trainable_params | 41.9M / 7.29B (0.58%) |", "| batch_size | 8 |",
        "| gradient_accumulation | 8 |", "| reward_model | SpaCy nb_core_news_lg |", "SpaCy grammar quality >= 0.65",
    ],
    2: [
        "| math | gsm_hard | 0.063 | 0.057 | 0.060 | 0.067 | 0.067 | 0.063 | 0.073 | 0.150 | 8.667 | True | 0.115 |",
        "| math | gsm8k_test_500 | 0.080 | 0.093 | 0.100 | 0.100 | 0.093 | 0.097 | 0.100 | 0.293 | 21.333 | True | 0.094 |",
        "| code | mbpp_test_held | 0.230 | 0.240 | 0.250 | 0.250 | 0.250 | 0.250 | 0.240 | 0.320 | 9.000 | True | 0.222 |",
        "| code | mbpp_plus | 0.217 | 0.213 | 0.280 | 0.270 | 0.270 | 0.267 | 0.210 | 0.450 | 23.333 | True | 0.271 |",
        "| science | arc_challenge | 0.716 | 0.732 | 0.736 | 0.729 | 0.736 | 0.729 | 0.739 | 0.722 | 0.669 | False | 5.000 |",
        "| science | openbookqa_test | 0.710 | 0.760 | 0.747 | 0.743 | 0.713 | 0.717 | 0.753 | 0.983 | 27.333 | True | 0.183 |",
        "averaged over usable held-outs: 0.0187",
    ],
}


@pytest.mark.parametrize("n", [0, 1, 2])
def test_every_number_equals_the_seeds(n):
    """The seed's facts appear on the rendered card, and every number in the card's tables is a
    number the seed states (seed 001 writes rewards accuracy as a percentage)."""
    m = load_manifest(EXAMPLES / f"seed{n:03d}" / "hubkit.yaml")
    text = "\n".join(c.text for c in render_cards(m))
    for fact in SEED_FACTS[n]:
        assert fact in text, fact
    seed_numbers = set(SEED_NUMBERS[f"{n:03d}"]["numbers"])
    seed_numbers |= {round(x / 100, 6) for x in seed_numbers}  # 98.1% == 0.981
    body = text.split("## Reproduce")[0] + text.split("## Lineage")[-1] if "## Lineage" in text else text
    for cell in table_cells(body):
        if cell.startswith(("[", "**this model**", "base:")) or "run `" in cell:
            continue
        for num in numbers_in(cell.replace("+", "").replace("pp", "")):
            # an exact count the seed gives rounded (41,943,040 vs "41.94 M") agrees at its precision
            scaled = {round(num / k, 2) for k in (1e3, 1e6, 1e9)}
            ok = num in seed_numbers or bool(scaled & seed_numbers) or (float(num).is_integer() and num <= 10)
            assert ok, f"{num} in {cell!r} is not in seed {n}"


@pytest.fixture(scope="module")
def demo_cards(demo_world, tmp_path_factory):
    """Real eval records (limit 40, base + both adapters) and the demo's cards rendered from them."""
    from hubkit.eval import run_eval

    os.environ["HUBKIT_HOME"] = str(tmp_path_factory.mktemp("home"))
    runs = tmp_path_factory.mktemp("runs")
    m = load_manifest(demo_world.paths.manifest)
    run_eval(m, runs_dir=runs, limit=40)
    return m, runs


def test_front_matter_parses_back_with_huggingface_hub(demo_cards):
    m, runs = demo_cards
    card = render_card(m, "lora-full", runs_dir=runs)
    data = ModelCard(card.text).data
    assert data.base_model == "hubkit-demo/tiny-mistral" and data.license == "apache-2.0"
    assert data.library_name == "peft" and data.to_dict()["base_model_relation"] == "adapter"
    (res,) = [r for r in data.eval_results if r.metric_type == "acc"]
    from hubkit.eval.records import load_record

    run = load_record(next(runs.glob("*lora-full*")))
    acc = next(r for r in run.rows if r.metric == "acc")
    assert res.metric_value == round(acc.value, 4) and res.dataset_args == {"num_fewshot": "0"}
    assert res.source_url.endswith(run.run_id)
    # only this adapter's reproduced numbers are in model-index; claims never are
    assert {r.metric_type for r in data.eval_results} == {"acc", "acc_norm"} and len(data.eval_results) == 2
    assert check_card(m, card) == []


def test_seed_front_matter_round_trip():
    m = load_manifest(EXAMPLES / "seed000" / "hubkit.yaml")
    for card in render_cards(m):
        data = ModelCard(card.text).data.to_dict()
        assert data["base_model"] == "golfoscar/mistral-7b-sft-arc" and data["license"] == "apache-2.0"
        assert check_card(m, card) == []
    # the adapter's own claim is in model-index, self-reported and kept apart from reproduced ones;
    # the merged card does not claim the adapter's number as its own
    lora = ModelCard(render_card(m, "nca-arc-lora").text).data
    (res,) = lora.eval_results
    assert (res.dataset_name, res.metric_type, res.metric_value, res.dataset_args) == ("arc_challenge", "acc_norm", 0.6834, {"num_fewshot": "25"})
    assert res.source_name == "self-reported" and res.dataset_type == "allenai/ai2_arc" and res.dataset_config == "ARC-Challenge"
    assert not ModelCard(render_card(m, "nca-arc-merged").text).data.eval_results
    assert ModelCard(render_card(m, "nca-arc-merged").text).data.to_dict()["base_model_relation"] == "merge"


def test_rendering_twice_gives_identical_bytes(demo_cards, tmp_path):
    m, runs = demo_cards
    one = render_cards(m, runs_dir=runs)
    two = render_cards(m, runs_dir=runs)
    assert [c.text for c in one] == [c.text for c in two]
    assert all(c.chart is not None for c in one) and [c.chart for c in one] == [c.chart for c in two]
    # the base is published as an artifact too: its card has its own runs (subject "base")
    base = next(c for c in one if c.name == "tiny-mistral")
    assert "**this model** (`tiny-mistral`)" in base.text and base.metadata.get("model-index")
    write_cards(one, tmp_path / "a")
    write_cards(two, tmp_path / "b")
    for f in (tmp_path / "a").rglob("*"):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()


def test_overriding_one_partial(demo_cards, tmp_path):
    m, runs = demo_cards
    (tmp_path / "tpl" / "card").mkdir(parents=True)
    (tmp_path / "tpl" / "card" / "_usage_adapter.md.j2").write_text("\n## Usage\n\nAsk us for {{ artifact.repo_id }}.\n")
    plain = render_card(m, "lora-half", runs_dir=runs).text
    custom = render_card(m, "lora-half", runs_dir=runs, template_dir=tmp_path / "tpl").text
    assert "Ask us for demo-user/tiny-mistral-lora-half." in custom and "BitsAndBytesConfig" not in custom
    assert custom.split("## Usage")[0] == plain.split("## Usage")[0]  # everything else untouched


# -- --check lints --------------------------------------------------------------------------------


def variant(tmp_path: Path, seed: str, change) -> Path:
    src = EXAMPLES / seed
    dst = tmp_path / seed
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("cards"))
    data = yaml.safe_load((dst / "hubkit.yaml").read_text())
    change(data)
    (dst / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return dst / "hubkit.yaml"


def lints(path: Path, **kw) -> list[str]:
    m = load_manifest(path)
    return [p for c in render_cards(m, **kw) for p in check_card(m, c)]


def test_lint_unknown_and_missing_license(tmp_path):
    path = variant(tmp_path, "seed001", lambda d: d["project"].update(license="apache2"))
    assert any("license 'apache2' is not on the Hub's list" in p for p in lints(path))
    path = variant(tmp_path / "b", "seed001", lambda d: d["project"].update(license=""))
    assert any("no license in the front matter" in p for p in lints(path))


def test_lint_local_paths_in_metadata(tmp_path):
    def change(d):
        d["artifacts"]["klsft-delta-dpo"]["base_model"] = "./checkpoints/base"
        d["datasets"]["nb-wikipedia"]["hub_id"] = "data/nb.jsonl"
        d["artifacts"]["klsft-delta-dpo"]["datasets"] = ["nb-wikipedia"]

    got = lints(variant(tmp_path, "seed001", change))
    assert any("base_model './checkpoints/base' is a local path" in p for p in got), got
    assert any("datasets entry 'data/nb.jsonl' is a local path" in p for p in got), got


def test_lint_number_without_run_or_claim(tmp_path):
    tpl = tmp_path / "tpl" / "card"
    tpl.mkdir(parents=True)
    src = (REPO / "templates" / "card" / "_results.md.j2").read_text()
    (tpl / "_results.md.j2").write_text(src.replace("{{ m.table(t) }}", "{{ m.table(t) }}\n| a typed-in row | 0.7712 |  |  |"))
    got = lints(EXAMPLES / "seed000" / "hubkit.yaml", template_dir=tmp_path / "tpl")
    assert any("'0.7712'" in p and "no run record or claim backs" in p for p in got), got


def test_lint_stale_card(tmp_path, capsys):
    path = variant(tmp_path, "seed000", lambda d: None)
    assert main(["card", "-m", str(path)]) == 0
    assert main(["card", "-m", str(path), "--check"]) == 0
    data = yaml.safe_load(path.read_text())
    data["claims"][1]["value"] = 0.6333
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    capsys.readouterr()
    assert main(["card", "-m", str(path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "is stale" in err and "nca-arc-lora" in err


def test_cli_card_json(tmp_path, capsys):
    path = variant(tmp_path, "seed002", lambda d: None)
    assert main(["card", "-m", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cards"][0]["name"] == "report" and Path(out["cards"][0]["path"]).is_file()


def test_card_preview_shows_the_card_as_the_hub_does(tmp_path, capsys):
    """`hubkit card --preview` writes, beside each card, the page the local hub would show for it:
    the metadata panel and the results table with every number, nothing fetched off-host."""
    path = variant(tmp_path, "seed000", lambda d: None)
    assert main(["card", "-m", str(path), "--artifact", "nca-arc-lora", "--preview"]) == 0
    (shown,) = capsys.readouterr().out.split()
    page = Path(shown).read_text()
    assert Path(shown).name == "preview.html" and Path(shown).parent == tmp_path / "seed000" / "cards" / "nca-arc-lora"
    for number in ("0.6143", "0.6834 ± 0.0136", "+6.91 pp"):
        assert number in page
    assert "golfoscar/mistral-7b-sft-arc" in page and "apache-2.0" in page  # base model and license in the panel
    # nothing is loaded from off-host (links to the Hub are links, not loads) and no script runs
    assert not re.search(r"""src=["']https?://""", page) and not re.search(r"""<link[^>]+href=["']https?://""", page)
    assert "<script" not in page
    # several cards cannot share one preview server
    assert main(["card", "-m", str(path), "--serve"]) == 1
    assert "--serve shows one card at a time" in capsys.readouterr().err
