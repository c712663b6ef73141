"""What `hubkit validate`, `hubkit init` and `hubkit publish` say about a manifest that would
otherwise go wrong later: duplicate keys, repo ids huggingface_hub refuses, paths that are
missing or lead outside the project, a non-UTF-8 file, and an adapter meant for the Hub whose base
is only a local folder. Driven through the CLI; each checks the exit code and the exact line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hubkit.cli import main
from hubkit.manifest import load_manifest

HEAD = "project:\n  name: tiny\n  license: apache-2.0\n"


def make_adapter(folder: Path, base: str = "org/tiny-base") -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "base_model_name_or_path": base, "r": 4, "lora_alpha": 8, "lora_dropout": 0.0,
        "target_modules": ["q_proj"], "task_type": "CAUSAL_LM",
    }))
    save_file({
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": np.zeros((4, 8), np.float32),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": np.zeros((8, 4), np.float32),
    }, str(folder / "adapter_model.safetensors"))
    return folder


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal" not in err
    return code, out, err


def errors(err: str) -> list[str]:
    return [line.removeprefix("error: ") for line in err.splitlines() if line.startswith("error: ")]


@pytest.fixture
def proj(tmp_path):
    root = tmp_path / "proj"
    make_adapter(root / "adapter")
    return root


def manifest(root: Path, text: str) -> Path:
    path = root / "hubkit.yaml"
    path.write_text(text)
    return path.resolve()


ARTIFACT = "artifacts:\n  a:\n    kind: adapter\n    path: adapter\n    repo_id: me/a\n    base_model: org/tiny-base\n"


# -- 2. duplicate keys ------------------------------------------------------------------------------


def test_a_second_artifacts_section_is_an_error_not_a_silent_replacement(proj, capsys):
    path = manifest(proj, HEAD + ARTIFACT + "evals: {}\nartifacts:\n  b:\n    kind: adapter\n    path: adapter\n")
    code, out, err = run(capsys, "validate", "-m", path)
    assert code == 2 and out == ""
    assert errors(err) == [f"{path}: artifacts: duplicate key on line 11 (first on line 4; YAML would silently keep only the last)"]
    assert "hint: Keep one of each: merge the two entries, or rename one." in err
    # the same refusal stops a publish before anything else happens
    code, _, err = run(capsys, "publish", "-m", path, "--dry-run", "--endpoint", "http://127.0.0.1:9")
    assert code == 2 and errors(err)[0].startswith(f"{path}: artifacts: duplicate key on line 11")


def test_duplicates_at_any_depth_are_each_named_by_key_path(proj, capsys):
    text = HEAD + ARTIFACT + "    kind: merged\n" + "lineage:\n  - name: sft\n    method: SFT\n    name: dpo\n"
    path = manifest(proj, text)
    code, _, err = run(capsys, "validate", "-m", path)
    assert code == 2
    assert errors(err) == [
        f"{path}: artifacts.a.kind: duplicate key on line 10 (first on line 6; YAML would silently keep only the last)",
        f"{path}: lineage.0.name: duplicate key on line 14 (first on line 12; YAML would silently keep only the last)",
    ]


def test_yaml_merge_keys_and_repeated_anchors_are_not_duplicates(proj, capsys):
    text = HEAD + (
        "x-common: &common\n  kind: adapter\n  base_model: org/tiny-base\n"
        "artifacts:\n  a:\n    <<: *common\n    kind: adapter\n    path: adapter\n    repo_id: me/a\n"
    )
    path = manifest(proj, text.replace("x-common", "datasets: {}\nx-common"))
    data = yaml.safe_load(path.read_text())
    assert data["artifacts"]["a"]["base_model"] == "org/tiny-base"
    code, _, err = run(capsys, "validate", "-m", path)
    assert "duplicate key" not in err  # (the x-common key itself is refused by the schema)
    assert errors(err) == [f"{path}: x-common: unknown key (allowed: schema_version, project, artifacts, lineage, datasets, evals, claims, sections, space, scaleout, card, benchmarks)"]


# -- 7. unreadable files, repo ids, paths -----------------------------------------------------------


def test_a_non_utf8_manifest_is_one_line(proj, capsys):
    path = proj / "hubkit.yaml"
    path.write_bytes((HEAD + "  summary: caf\xe9\n").encode("latin-1"))
    code, out, err = run(capsys, "validate", "-m", path)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"error: {path}: not UTF-8 text (byte 0xe9 on line 4)",
        "hint: Save the manifest as UTF-8, e.g. `iconv -f latin1 -t utf-8 hubkit.yaml > fixed.yaml`.",
    ]


def test_a_control_character_is_one_line_with_its_line(proj, capsys):
    path = manifest(proj, HEAD + "  summary: a\x07b\n")
    code, _, err = run(capsys, "validate", "-m", path)
    assert code == 2
    assert errors(err) == [f"{path}: not valid YAML (line 4): special characters are not allowed"]


@pytest.mark.parametrize("repo_id, yaml_value", [("owner/..", "owner/.."), ("owner/name\n", '"owner/name\\n"'), ("a--b/c", "a--b/c"), ("me/x.git", "me/x.git")])
def test_repo_ids_huggingface_hub_refuses_fail_validate(proj, capsys, repo_id, yaml_value):
    path = manifest(proj, HEAD + ARTIFACT.replace("repo_id: me/a", f"repo_id: {yaml_value}") + f"space:\n  repo_id: {yaml_value}\n")
    code, _, err = run(capsys, "validate", "-m", path)
    assert code == 2
    got = errors(err)
    assert [g.split(": ")[1] for g in got] == ["artifacts.a.repo_id", "space.repo_id"]
    assert all(f"expected a Hub repo id like 'owner/name', got {repo_id!r} (" in g for g in got)
    assert len(err.splitlines()) == 3  # two problems and the hint, one line each (no raw newline)


def test_the_repo_id_rule_is_huggingface_hubs(proj):
    """Whatever validate accepts, huggingface_hub accepts; whatever it refuses, so does the client."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from hubkit.manifest import repo_id_problem

    for value in ["me/a", "a", "Org-1/model_v2.1", "owner/..", "a/b/c", "owner/name\n", "-x/y", "x" * 97, "me/a.git", "a--b/c", ""]:
        try:
            validate_repo_id(value)
            theirs = True
        except HFValidationError:
            theirs = False
        assert (repo_id_problem(value) is None) == theirs, value


def test_init_with_a_bad_repo_id_is_a_user_error_naming_the_option(proj, tmp_path, capsys):
    out_path = tmp_path / "new" / "hubkit.yaml"
    code, out, err = run(capsys, "init", "--adapter", proj / "adapter", "--repo-id", "../../evil", "-o", out_path)
    assert code == 2 and out == ""  # a usage error
    assert err.splitlines() == [
        "error: --repo-id: expected a Hub repo id like 'owner/name', got '../../evil' (repo id must be in the form 'repo_name' or 'namespace/repo_name')",
        "hint: Pass the Hub repo to publish to as --repo-id owner/name (e.g. me/my-lora).",
    ]
    assert not out_path.exists() and not out_path.parent.exists()


def test_artifact_paths_must_exist(proj, capsys):
    text = HEAD + ARTIFACT + "  b:\n    kind: merged\n    path: merged\n    base_model: org/tiny-base\n"
    path = manifest(proj, text)
    # a merged sibling before `hubkit merge` validates, with a warning that says what builds it
    code, out, err = run(capsys, "validate", "-m", path)
    assert code == 0 and out.startswith(f"{path}: ok")
    assert f"warning: {path}: artifacts.b.path: {proj.resolve() / 'merged'} does not exist (`hubkit merge` builds it; eval and publish need the files)" in err.splitlines()
    # publishing it is refused before anything is sent
    published = manifest(proj, text + "    repo_id: me/b\n")
    code, _, err = run(capsys, "publish", "-m", published, "--dry-run")
    assert code == 2
    assert f"{published}: artifacts.b.path: {proj.resolve() / 'merged'} does not exist" in err
    path = manifest(proj, text)
    # with facts (what `hubkit inspect --json` wrote) a card can still be made: a warning
    (proj / "b.facts.json").write_text("{}")
    path = manifest(proj, text + "    facts: b.facts.json\n")
    code, out, err = run(capsys, "validate", "-m", path)
    assert code == 0 and out.startswith(f"{path}: ok")
    assert err.splitlines() == [f"warning: {path}: artifacts.b.path: {proj.resolve() / 'merged'} does not exist (cards use facts: b.facts.json; eval and publish need the files)"]


def test_paths_leading_outside_the_project_are_errors_unless_absolute(proj, tmp_path, capsys):
    outside = make_adapter(tmp_path / "outside")
    (proj / "linked").symlink_to(outside)
    text = HEAD + ARTIFACT.replace("path: adapter", "path: ../outside") + ARTIFACT.split("\n", 1)[1].replace("  a:", "  b:").replace("path: adapter", "path: linked").replace("me/a", "me/b")
    path = manifest(proj, text + "project_extra: 0\n".replace("project_extra: 0\n", ""))
    code, _, err = run(capsys, "validate", "-m", path)
    assert code == 2
    target = outside.resolve()
    assert errors(err) == [
        f"{path}: artifacts.a.path: '../outside' leads outside the manifest's folder through '..' (to {target}); write it as an absolute path if that is where it is",
        f"{path}: artifacts.b.path: 'linked' leads outside the manifest's folder through a symlink (to {target}); write it as an absolute path if that is where it is",
    ]
    path = manifest(proj, text.replace("path: ../outside", f"path: {outside}").replace("path: linked", f"path: {outside}"))
    assert run(capsys, "validate", "-m", path)[0] == 0  # absolute: explicit, allowed


# -- 9. a base that is only a local folder ----------------------------------------------------------


def test_init_on_an_adapter_with_a_local_base_and_validate_says_what_to_set(tmp_path, capsys):
    base = tmp_path / "base-model"
    base.mkdir()
    adapter = make_adapter(tmp_path / "my-lora", base=str(base))
    out_path = tmp_path / "proj" / "hubkit.yaml"
    code, out, err = run(capsys, "init", "--adapter", adapter, "--repo-id", "me/my-lora", "-o", out_path)
    assert code == 0, err
    text = out_path.read_text()
    assert f'# folder ("{base}"), which the Hub and the card\'s loading code cannot use;' in text
    assert "base_model: null  # TODO: the base's Hub id (see above)" in text
    art = load_manifest(out_path).artifacts["my-lora"]
    assert art.base_model is None and (out_path.parent / art.base_model_path).resolve() == base.resolve()
    path = out_path.resolve()
    code, out, err = run(capsys, "validate", "-m", out_path)
    assert code == 2 and out == ""
    assert errors(err) == [
        f"{path}: artifacts.my-lora.base_model: not set, and adapter_config.json names a local folder ({base}); set it to the base "
        "model's Hub id (e.g. mistralai/Mistral-7B-v0.1), which the card's loading code and the Hub's model tree use "
        "(a local copy goes in base_model_path)"
    ]
    # publish refuses it too, before asking the Hub anything
    code, _, err = run(capsys, "publish", "-m", out_path, "--dry-run", "--endpoint", "http://127.0.0.1:9")
    assert code == 2 and errors(err)[0].startswith(f"{path}: artifacts.my-lora.base_model: not set")
    out_path.write_text(text.replace("base_model: null", "base_model: org/tiny-base"))
    assert run(capsys, "validate", "-m", out_path)[0] == 0
    # not meant for the Hub (no repo_id): nothing to complain about
    out_path.write_text(text.replace("repo_id: me/my-lora", "repo_id: null"))
    assert run(capsys, "validate", "-m", out_path)[0] == 0


def test_a_merged_sibling_inherits_its_adapters_base_problem(tmp_path, capsys):
    base = tmp_path / "base-model"
    base.mkdir()
    adapter = make_adapter(tmp_path / "my-lora", base=str(base))
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "config.json").write_text(json.dumps({"model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    from safetensors.numpy import save_file

    save_file({"model.embed_tokens.weight": np.zeros((4, 4), np.float32)}, str(merged / "model.safetensors"))
    out_path = tmp_path / "proj" / "hubkit.yaml"
    code, _, err = run(capsys, "init", "--adapter", adapter, "--merged", merged, "--repo-id", "me/my-lora", "-o", out_path)
    assert code == 0, err
    assert "base_model: null  # TODO: the base's Hub id, as for my-lora" in out_path.read_text()
    code, _, err = run(capsys, "validate", "-m", out_path)
    assert code == 2
    assert [e.split(": ")[1] for e in errors(err)] == ["artifacts.my-lora.base_model", "artifacts.my-lora-merged.base_model"]
    assert "its adapter 'my-lora' has none either" in errors(err)[1]


def test_init_writes_a_commented_local_data_block_that_works_when_uncommented(tmp_path, capsys):
    adapter = make_adapter(tmp_path / "my-lora")
    out_path = tmp_path / "proj" / "hubkit.yaml"
    assert run(capsys, "init", "--adapter", adapter, "--repo-id", "me/my-lora", "-o", out_path)[0] == 0
    text = out_path.read_text()
    assert "    # data:\n    #   arc_challenge:\n" in text and 'README: "Local data for Hub tasks"' in text
    m = load_manifest(out_path)
    assert m.evals["default"].tasks == ["arc_challenge"] and not m.evals["default"].data
    uncommented = "\n".join(
        line.replace("# ", "", 1) if line.lstrip().startswith(("# data:", "#   arc_challenge:", "#     format:", "#     files:")) else line
        for line in text.splitlines()
    )
    out_path.write_text(uncommented + "\n")
    override = load_manifest(out_path).evals["default"].data["arc_challenge"]
    assert override.format == "json" and override.files == {"train": "data/arc/train.jsonl", "test": "data/arc/test.jsonl"}
