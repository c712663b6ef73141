"""The CLI as a user meets it: exit codes, one-line errors with a next step, --json, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from hubkit.cli import main
from hubkit.manifest import load_manifest


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_every_command(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for cmd in ("init", "inspect", "eval", "merge", "card", "publish", "space", "demo", "validate", "schema"):
        assert f"  {cmd} " in out


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys; from hubkit.cli import main; main(['--help']) if False else None;"
        "import hubkit.cli, hubkit.manifest, hubkit.inspection;"
        "heavy = [m for m in ('torch', 'transformers', 'peft', 'lm_eval', 'gradio') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_inspect_json(capsys, demo_world):
    code, out, _ = run(capsys, "inspect", str(demo_world.paths.adapters["lora-full"]), "--json", "--no-hash")
    assert code == 0
    data = json.loads(out)
    assert data["r"] == 16 and data["lora_alpha"] == 32.0 and len(data["module_types"]) == 7


def test_inspect_text(capsys, demo_world):
    code, out, _ = run(capsys, "inspect", str(demo_world.paths.adapters["lora-full"]))
    assert code == 0
    assert "rank r:            16" in out
    assert "target modules:    down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj (7 types)" in out


def test_inspect_error_is_one_line_and_exit_2(capsys, tmp_path):
    code, out, err = run(capsys, "inspect", str(tmp_path))
    assert code == 2 and out == ""
    assert err == f"error: {tmp_path}: neither a PEFT adapter (no adapter_config.json) nor a checkpoint (no config.json) nor GGUF files (no .gguf)\n"


def test_validate_reports_each_problem_with_hint(capsys, tmp_path):
    path = tmp_path / "hubkit.yaml"
    path.write_text(yaml.safe_dump({"project": {"name": "x", "license": "mit", "lisence": 1}}))
    code, out, err = run(capsys, "validate", "-m", str(path))
    assert code == 2
    assert err.splitlines() == [
        f"error: {path}: project.lisence: unknown key (did you mean 'license'?)",
        "hint: Fix the fields above; `hubkit schema` prints the manifest's JSON Schema.",
    ]


def test_debug_shows_traceback(tmp_path):
    env = {"HUBKIT_DEBUG": "1", "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "hubkit.cli", "inspect", str(tmp_path)], capture_output=True, text=True, env=env
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "InspectError" in proc.stderr


def test_usage_error_exit_code(capsys):
    code, _, err = run(capsys, "inspect")
    assert code == 2 and "Missing argument 'PATH'" in err


def test_schema_is_json(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0 and json.loads(out)["title"] == "hubkit manifest (hubkit.yaml)"


def test_init_writes_valid_manifest_from_adapter(capsys, demo_world, tmp_path):
    out_path = tmp_path / "proj" / "hubkit.yaml"
    adapter = demo_world.paths.adapters["lora-full"]
    code, out, err = run(capsys, "init", "--adapter", str(adapter), "--repo-id", "me/my-lora", "-o", str(out_path))
    assert code == 0 and out.strip() == str(out_path)
    m = load_manifest(out_path)
    (name,) = m.artifacts
    art = m.artifacts[name]
    assert art.kind == "adapter" and art.repo_id == "me/my-lora"
    assert art.base_model == "hubkit-demo/tiny-mistral"
    assert m.resolve(art.path).resolve() == adapter.resolve()
    # a second init refuses to clobber the user's manifest
    code, _, err = run(capsys, "init", "--adapter", str(adapter), "-o", str(out_path))
    assert code == 1 and "already exists" in err and "--force" in err


def test_init_with_local_base_leaves_base_model_as_todo(capsys, demo_world, tmp_path):
    import shutil

    adapter = tmp_path / "adapter"
    shutil.copytree(demo_world.paths.adapters["lora-half"], adapter)
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(demo_world.paths.base)
    (adapter / "adapter_config.json").write_text(json.dumps(cfg))
    out_path = tmp_path / "hubkit.yaml"
    assert run(capsys, "init", "--adapter", str(adapter), "-o", str(out_path))[0] == 0
    text = out_path.read_text()
    assert "TODO: the base's Hub id" in text
    art = next(iter(load_manifest(out_path).artifacts.values()))
    assert art.base_model is None
    assert (out_path.parent / art.base_model_path).resolve() == demo_world.paths.base.resolve()
