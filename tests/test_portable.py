"""What leaves the machine names no machine path: published records and cards' commands."""

from __future__ import annotations

import sys
from pathlib import Path

from hubkit.portable import machine_paths, portable, portable_command


def test_this_interpreter_and_project_paths_become_labels(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    places = machine_paths(root)
    line = f"cd {root} && HF_HUB_OFFLINE=1 {sys.executable} -m lm_eval --model hf --model_args pretrained={root}/base,peft={root}/adapters/a"
    out = portable(line, places)
    assert out == "cd . && HF_HUB_OFFLINE=1 python -m lm_eval --model hf --model_args pretrained=./base,peft=./adapters/a"
    assert str(tmp_path) not in out and sys.executable not in out
    if sys.prefix != sys.base_prefix:  # the suite runs in a venv: its folder gets a label too
        assert portable(f"{sys.prefix}/lib/site-packages/x.py", places) == "$VIRTUAL_ENV/lib/site-packages/x.py"


def test_portable_command_drops_the_interpreter_path(tmp_path):
    cmd = f"{Path(sys.executable)} -m lm_eval --tasks arc_challenge --output_path {tmp_path}/runs/x"
    assert portable_command(cmd, tmp_path) == "python -m lm_eval --tasks arc_challenge --output_path ./runs/x"
