"""What `hubkit merge` may write and delete, and how it fails: an --out that is, contains or holds
an input is refused (with or without --force), only hubkit's own finished merges are replaced,
and a full, read-only or forbidden output device ends in one line naming the folder, with no
partial output left behind. Also the r = 0 adapter, which must be refused, not divide by zero."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

import hubkit.merge as merge_mod
from hubkit.cli import main
from hubkit.errors import InspectError, MergeError
from hubkit.inspection import inspect_adapter, sha256_file
from hubkit.merge import LINEAGE_FILE, merge, plan_merge, run_merge


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny base and a q_proj adapter, built once; tests copy them where they need them."""
    root = tmp_path_factory.mktemp("world")
    torch.manual_seed(0)
    base = root / "base"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1))
    model.save_pretrained(base)
    ad = root / "adapter"
    get_peft_model(model, LoraConfig(target_modules=["q_proj"], r=4, lora_alpha=8, init_lora_weights=False)).save_pretrained(ad)
    return base, ad


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def inputs(world, tmp_path):
    """Base and adapter in one project folder, as people keep them: project/{base,adapter}."""
    base = _copy(world[0], tmp_path / "project" / "base")
    ad = _copy(world[1], tmp_path / "project" / "adapter")
    return base, ad


@pytest.mark.parametrize("where", ["parent of both", "the base", "the adapter", "the base's parent via a symlink"])
def test_force_never_deletes_an_input(inputs, tmp_path, where):
    base, ad = inputs
    before = {p: _fingerprint(p) for p in (base, ad)}
    out = {"parent of both": tmp_path / "project", "the base": base, "the adapter": ad, "the base's parent via a symlink": tmp_path / "link"}[where]
    if where.endswith("symlink"):
        out.symlink_to(tmp_path / "project")
    # even a marker planted there does not make an input replaceable
    (tmp_path / "project" / LINEAGE_FILE).write_text("{}")
    with pytest.raises(MergeError, match=r"(is|contains) the (base model|adapter) folder .*never writes over or deletes a merge input") as err:
        merge(ad, out, base=base, force=True)
    assert "\n" not in err.value.message and err.value.hint
    assert {p: _fingerprint(p) for p in (base, ad)} == before
    assert not list((tmp_path).glob(".*partial*")) and not list((tmp_path / "project").glob(".*partial*"))


def test_cli_refusal_is_one_line_naming_the_folder(inputs, tmp_path, capsys):
    base, ad = inputs
    code = main(["merge", str(ad), "--base", str(base), "--out", str(tmp_path / "project"), "--force"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {tmp_path / 'project'}: contains the base model folder")
    assert "--out outside the base and adapter folders" in err


def test_only_a_finished_merge_is_replaced(inputs, tmp_path):
    base, ad = inputs
    out = tmp_path / "merged"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    # a folder that is not a hubkit merge: refused with and without --force, left as it was
    for force in (False, True):
        with pytest.raises(MergeError, match=r"exists and is not a finished hubkit merge"):
            merge(ad, out, base=base, force=force)
        assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    # an empty folder is simply used
    first = merge(ad, out, base=base)
    assert (out / LINEAGE_FILE).is_file() and first.out == out
    # a finished merge: replaced only with --force
    with pytest.raises(MergeError, match=r"already exists \(an earlier hubkit merge\)"):
        merge(ad, out, base=base)
    merge(ad, out, base=base, force=True, dtype="bfloat16")
    assert json.loads((out / LINEAGE_FILE).read_text())["dtype"] == "bfloat16"
    # a finished merge someone filed other folders into is no longer hubkit's alone
    (out / "keep").mkdir()
    with pytest.raises(MergeError, match=r"not a finished hubkit merge \(no hubkit_merge.json, or it holds folders\)"):
        merge(ad, out, base=base, force=True)
    assert (out / "keep").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_file_as_out_is_refused(inputs, tmp_path):
    base, ad = inputs
    (tmp_path / "out").write_text("x")
    with pytest.raises(MergeError, match="exists and is not a folder"):
        merge(ad, tmp_path / "out", base=base, force=True)
    assert (tmp_path / "out").read_text() == "x"


def test_disk_full_is_one_line_and_leaves_nothing(inputs, tmp_path, monkeypatch):
    """The writer gets /dev/full: the kernel's own ENOSPC, mid-merge."""
    if not Path("/dev/full").exists():
        pytest.fail("this test needs Linux's /dev/full")
    base, ad = inputs
    monkeypatch.setattr(merge_mod, "_create", lambda path: open("/dev/full", "wb", buffering=0))  # noqa: SIM115
    out = tmp_path / "out"
    with pytest.raises(MergeError, match=rf"^{out}: no space left on the device \(the merge writes 0\.\d\d GB, [\d.]+ GB free\); nothing was left behind$") as err:
        merge(ad, out, base=base)
    assert "another --out" in err.value.hint
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["project"]


def test_too_little_space_is_refused_before_writing(inputs, tmp_path, monkeypatch):
    base, ad = inputs
    real = merge_mod.shutil.disk_usage
    monkeypatch.setattr(merge_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    out = tmp_path / "out"
    with pytest.raises(MergeError, match=rf"^{out}: not enough space: the merge writes 0\.\d\d GB, 0\.00 GB free there$"):
        merge(ad, out, base=base)
    assert [p.name for p in tmp_path.iterdir()] == ["project"]


@pytest.mark.parametrize(("code", "said"), [(errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")])
def test_unwritable_output_is_one_line(inputs, tmp_path, monkeypatch, code, said):
    """A read-only or forbidden folder. As root neither can be made with chmod, so the OS error is
    raised where the merge creates its folders."""
    base, ad = inputs
    plan = plan_merge(ad, base)
    out = tmp_path / "ro" / "out"

    def refuse(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(MergeError) as err:
        run_merge(plan, out)
    assert err.value.message == f"{out}: cannot write the merge there: {said}"
    assert err.value.hint and "\n" not in err.value.message
    assert not (tmp_path / "ro").exists()


def test_a_killed_merges_leftovers_are_swept_only_when_marked(inputs, tmp_path):
    base, ad = inputs
    dead = 2**22 + 12345  # above pid_max's default: no such process
    ours = tmp_path / f".out.partial-{dead}"
    ours.mkdir()
    (ours / ".hubkit-partial").write_text(f"{dead}\n")
    theirs = tmp_path / f".out.partial-{dead + 1}"  # same pattern, not made by hubkit
    theirs.mkdir()
    (theirs / "data.bin").write_bytes(b"keep")
    merge(ad, tmp_path / "out", base=base)
    assert not ours.exists()
    assert (theirs / "data.bin").read_bytes() == b"keep"


def test_rank_zero_is_refused_by_inspect_and_merge(inputs, tmp_path):
    base, ad = inputs
    cfg = json.loads((ad / "adapter_config.json").read_text())
    cfg["r"] = 0
    (ad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(InspectError, match=r"field 'r' is 0: a LoRA rank must be a positive integer"):
        inspect_adapter(ad)
    with pytest.raises(MergeError, match=r"r is 0: a LoRA rank must be a positive integer"):
        plan_merge(ad, base)


def test_rank_zero_tensors_are_refused(inputs, tmp_path):
    """A config that claims a rank, tensors of rank 0."""
    from safetensors.torch import load_file, save_file

    base, ad = inputs
    tensors = load_file(ad / "adapter_model.safetensors")
    tensors = {k: (v[:0] if "lora_A" in k else v[:, :0]).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(ad / "adapter_model.safetensors"))
    with pytest.raises(MergeError, match=r"lora_A.weight has rank 0"):
        plan_merge(ad, base)


def test_inspect_names_the_lora_variant(world, tmp_path):
    """The variants merge refuses or handles are facts `hubkit inspect` shows too."""
    base, ad = world
    assert inspect_adapter(ad, hash_files=False).variants == []
    model = LlamaForCausalLM.from_pretrained(base)
    dora = tmp_path / "dora"
    get_peft_model(model, LoraConfig(target_modules=["q_proj"], r=4, lora_alpha=8, use_dora=True, trainable_token_indices=[3])).save_pretrained(dora)
    assert inspect_adapter(dora, hash_files=False).variants == ["dora", "trainable_tokens"]
