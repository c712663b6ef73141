"""`hubkit inspect` on GGUF files: real files written with llama.cpp's `gguf` package, every fact
checked against what the test wrote (and the header reader against gguf's own GGUFReader)."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import pytest
from gguf_fixture import FILE_TYPES, random_weights, write_tiny_llama

from hubkit.cli import main
from hubkit.errors import InspectError
from hubkit.gguf import (
    TRANSFORMERS_GGUF_ARCHITECTURES,
    TRANSFORMERS_GGUF_TENSOR_TYPES,
    name_quant_label,
    read_gguf_header,
)
from hubkit.inspection import inspect_path, load_facts_file

QTYPES = ("F32", "F16", "Q8_0")


def expected_layout(qtype: str) -> tuple[int, int, dict[str, int]]:
    """(parameters, tensor bytes, tensors per type) of the tiny llama in `qtype`, computed from the
    weights the test writes: 1-D norms stay F32, matrices take `qtype` (Q8_0: 34 bytes per 32)."""
    weights = random_weights()
    params = sum(w.size for w in weights.values())
    norms = sum(w.size for w in weights.values() if w.ndim == 1)
    matrices = params - norms
    n_norms = sum(1 for w in weights.values() if w.ndim == 1)
    n_matrices = len(weights) - n_norms
    per_matrix = {"F32": 4 * matrices, "F16": 2 * matrices, "Q8_0": matrices // 32 * 34}[qtype]
    types = {"F32": len(weights)} if qtype == "F32" else {qtype: n_matrices, "F32": n_norms}
    return params, per_matrix + 4 * norms, types


@pytest.fixture
def gguf_dir(tmp_path):
    d = tmp_path / "gguf"
    d.mkdir()
    for q in QTYPES:
        write_tiny_llama(d / f"tiny-{q}.gguf", q)
    write_tiny_llama(d / "tiny-split-Q8_0.gguf", "Q8_0", split_max_tensors=8)
    (d / "README.md").write_text("# tiny\n")
    return d


def test_header_reader_agrees_with_ggufs_own_reader(gguf_dir):
    import gguf

    for path in sorted(gguf_dir.glob("*.gguf")):
        ours = read_gguf_header(path)
        theirs = gguf.GGUFReader(path)
        assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
        for a, b in zip(ours.tensors, theirs.tensors):
            assert a.shape == tuple(int(d) for d in b.shape)
            assert a.type_name == b.tensor_type.name
            assert (a.n_elements, a.n_bytes) == (b.n_elements, b.n_bytes)
            assert ours.data_start + a.offset == b.data_offset
        for key, field in theirs.fields.items():
            if key.startswith("GGUF."):
                continue
            value = ours.metadata[key]
            if field.types[0] == gguf.GGUFValueType.ARRAY:
                length = len(field.data)
                assert (value.length if hasattr(value, "length") else len(value)) == length, key
            elif field.types[0] == gguf.GGUFValueType.FLOAT32:
                assert value == pytest.approx(field.contents(), rel=1e-6), key
            else:
                assert value == field.contents(), key
        assert set(ours.metadata) == {k for k in theirs.fields if not k.startswith("GGUF.")}


def test_inspect_folder_reads_every_fact(gguf_dir):
    facts = inspect_path(gguf_dir)
    params, _, _ = expected_layout("F32")
    assert facts.kind == "gguf"
    assert (facts.architecture, facts.params, facts.context_length) == ("llama", params, 256)
    by_path = {m.path: m for m in facts.models}
    assert sorted(by_path) == ["tiny-F16.gguf", "tiny-F32.gguf", "tiny-Q8_0.gguf", "tiny-split-Q8_0-00001-of-00003.gguf"]
    for q in QTYPES:
        m = by_path[f"tiny-{q}.gguf"]
        n, tensor_bytes, types = expected_layout(q)
        assert m.parts == [m.path]
        assert (m.architecture, m.name, m.params, m.context_length, m.gguf_version) == ("llama", "Tiny Llama", n, 256, 3)
        assert m.file_type == FILE_TYPES[q] and m.quant_type == q
        assert m.tensor_types == types
        assert m.tensor_bytes == tensor_bytes
        assert m.bits_per_weight == pytest.approx(8 * tensor_bytes / n, abs=1e-4)
        assert m.size == (gguf_dir / m.path).stat().st_size > tensor_bytes  # the header and vocabulary come on top
        assert m.has_tokenizer and not m.has_chat_template
    split = by_path["tiny-split-Q8_0-00001-of-00003.gguf"]
    assert split.parts == [f"tiny-split-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert split.size == sum((gguf_dir / p).stat().st_size for p in split.parts)
    # the same tensors as the one-file Q8_0, spread over three files
    one = by_path["tiny-Q8_0.gguf"]
    assert (split.params, split.tensor_bytes, split.tensor_types, split.quant_type) == (one.params, one.tensor_bytes, one.tensor_types, "Q8_0")
    hashes = {f.path: f.sha256 for f in facts.files}
    assert set(hashes) == {p.name for p in gguf_dir.iterdir()}
    for name, digest in hashes.items():
        assert digest == hashlib.sha256((gguf_dir / name).read_bytes()).hexdigest()


def test_one_file_and_one_part_of_a_split(gguf_dir):
    facts = inspect_path(gguf_dir / "tiny-F16.gguf", hash_files=False)
    assert [m.path for m in facts.models] == ["tiny-F16.gguf"] and [f.path for f in facts.files] == ["tiny-F16.gguf"]
    assert facts.files[0].sha256 is None
    part = inspect_path(gguf_dir / "tiny-split-Q8_0-00002-of-00003.gguf", hash_files=False)
    (model,) = part.models
    assert model.parts == [f"tiny-split-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]


def test_no_hash_skips_sha(gguf_dir):
    assert all(f.sha256 is None for f in inspect_path(gguf_dir, hash_files=False).files)


def test_chat_template_is_seen(tmp_path):
    write_tiny_llama(tmp_path / "chat.gguf", "F16", chat_template="{% for m in messages %}{{ m.content }}{% endfor %}")
    (model,) = inspect_path(tmp_path, hash_files=False).models
    assert model.has_chat_template


def test_file_without_file_type_has_no_quant_label(tmp_path):
    write_tiny_llama(tmp_path / "old.gguf", "Q8_0", file_type=False)
    (model,) = inspect_path(tmp_path, hash_files=False).models
    assert model.file_type is None and model.quant_type is None
    assert model.tensor_types == expected_layout("Q8_0")[2]  # the tensors still say what is there


def test_inspect_cli_text_and_json(capsys, gguf_dir):
    code = main(["inspect", str(gguf_dir), "--no-hash"])
    out = capsys.readouterr().out
    assert code == 0
    params = expected_layout("F32")[0]
    assert f"parameters:        {params:,}" in out
    assert "architecture:      llama" in out and "context length:    256" in out
    assert "MOSTLY_Q8_0" in out and "tensors: Q8_0 x16, F32 x5" in out
    assert "tiny-split-Q8_0-00001-of-00003.gguf (3 parts)" in out
    code = main(["inspect", str(gguf_dir), "--json", "--no-hash"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["kind"] == "gguf" and data["inspected_by"].startswith("hubkit ")
    assert data == json.loads(json.dumps(inspect_path(gguf_dir, hash_files=False).to_dict()))
    # what --json writes is a facts file the card accepts as read by hubkit
    facts_file = gguf_dir.parent / "facts.json"
    facts_file.write_text(json.dumps(data))
    loaded = load_facts_file(facts_file)
    assert loaded["provenance"]["source"] == "inspect" and loaded["params"] == params and not loaded["params_approximate"]


def _one_line_error(capsys, path) -> str:
    code = main(["inspect", str(path), "--no-hash"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0].startswith("error: ") and "Traceback" not in captured.err
    return lines[0].removeprefix("error: ")


def test_truncated_tensor_data(capsys, tmp_path):
    path = write_tiny_llama(tmp_path / "cut.gguf", "F16")[0]
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    msg = _one_line_error(capsys, tmp_path)
    assert msg.startswith(f"{path}: truncated: tensors need {len(data)} bytes, file has {len(data) - 100}")


def test_truncated_header(capsys, tmp_path):
    path = write_tiny_llama(tmp_path / "cut.gguf", "F16")[0]
    path.write_bytes(path.read_bytes()[:300])
    assert _one_line_error(capsys, path).startswith(f"{path}: truncated or corrupt GGUF header")


def test_not_gguf(capsys, tmp_path):
    path = tmp_path / "x.gguf"
    path.write_bytes(b"\x00" * 64)
    assert _one_line_error(capsys, path) == f"{path}: not a GGUF file (no GGUF magic at the start)"


def test_old_version_is_refused(tmp_path):
    path = write_tiny_llama(tmp_path / "v.gguf", "F16")[0]
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", 1)
    path.write_bytes(bytes(data))
    with pytest.raises(InspectError) as info:
        inspect_path(path)
    assert str(info.value) == f"{path}: GGUF version 1 is not supported (versions 2 and 3 are)"
    assert "llama.cpp" in info.value.hint


def test_unknown_tensor_type_names_the_tensor(tmp_path):
    path = write_tiny_llama(tmp_path / "new.gguf", "F32")[0]
    data = bytearray(path.read_bytes())
    name = b"output.weight"
    at = data.index(len(name).to_bytes(8, "little") + name) + 8 + len(name)
    n_dims = struct.unpack_from("<I", data, at)[0]
    type_at = at + 4 + 8 * n_dims
    assert struct.unpack_from("<I", data, type_at)[0] == 0  # F32
    struct.pack_into("<I", data, type_at, 99)
    path.write_bytes(bytes(data))
    with pytest.raises(InspectError) as info:
        inspect_path(path)
    assert str(info.value).startswith(f"{path}: tensor 'output.weight' has type 99, unknown to gguf ")
    assert "pip install -U gguf" in info.value.hint


def test_missing_part_of_a_split_model(capsys, tmp_path):
    parts = write_tiny_llama(tmp_path / "big.gguf", "F16", split_max_tensors=8)
    parts[1].unlink()
    assert _one_line_error(capsys, tmp_path) == f"{tmp_path}: big-00002-of-00003.gguf missing (part 2 of a model split into 3)"


def test_part_of_another_split_is_caught(tmp_path):
    parts = write_tiny_llama(tmp_path / "a.gguf", "F16", split_max_tensors=8)
    other = write_tiny_llama(tmp_path / "b.gguf", "F16", split_max_tensors=10)  # two parts, other tensor counts
    parts[1].write_bytes(other[1].read_bytes())
    for p in other:
        p.unlink()
    with pytest.raises(InspectError) as info:
        inspect_path(tmp_path, hash_files=False)
    assert "split.tensors.count says 21 tensors, the 3 parts hold" in str(info.value)


def test_folder_without_gguf_files(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InspectError) as info:
        inspect_path(tmp_path)
    assert "nor GGUF files (no .gguf)" in str(info.value)


def test_big_vocabulary_is_skipped_not_parsed(tmp_path):
    """A Llama-3-sized vocabulary (128k tokens, 280k merges) costs the header reader a walk over
    the string lengths only; gguf's reader builds an array per element (20 s on the build machine)."""
    import time

    import gguf

    writer = gguf.GGUFWriter(tmp_path / "vocab.gguf", "llama")
    writer.add_token_list([f"t{i}" for i in range(128_000)])
    writer.add_token_merges([f"a{i} b{i}" for i in range(280_000)])
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    start = time.perf_counter()
    header = read_gguf_header(tmp_path / "vocab.gguf")
    elapsed = time.perf_counter() - start
    assert header.metadata["tokenizer.ggml.tokens"].length == 128_000
    assert header.metadata["tokenizer.ggml.merges"].length == 280_000
    assert elapsed < 10, elapsed  # generous for a loaded 2-core machine; it is under a second idle


@pytest.mark.parametrize(
    "name, label",
    [
        ("llama-2-7b-chat.Q4_K_M.gguf", "Q4_K_M"),
        ("Meta-Llama-3.1-8B-Instruct-Q6_K_L.gguf", "Q6_K_L"),
        ("Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
        ("model-bf16.gguf", "BF16"),
        ("tiny-split-Q8_0-00001-of-00003.gguf", "Q8_0"),
        ("mmproj-model-f16.gguf", "F16"),
        ("model.gguf", None),
    ],
)
def test_name_quant_label(name, label):
    assert name_quant_label(name) == label


def test_transformers_architectures_are_ones_its_gguf_loader_reads():
    """Every architecture hubkit offers transformers' `gguf_file=` loader for is one the installed
    transformers reads into a causal LM (llama.cpp's names, with the renames its loader applies)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    renames = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
    text_models = {"gemma3": "gemma3_text"}
    for arch in TRANSFORMERS_GGUF_ARCHITECTURES:
        name = renames.get(arch, arch)
        assert name in GGUF_SUPPORTED_ARCHITECTURES, arch
        assert text_models.get(name, name) in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, arch


def test_transformers_tensor_types_are_ones_gguf_dequantizes():
    import gguf

    for name in TRANSFORMERS_GGUF_TENSOR_TYPES:
        qtype = gguf.GGMLQuantizationType[name]
        block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if name in ("F32", "F16"):
            data = np.zeros(block, dtype=np.float32 if name == "F32" else np.float16)
        else:
            data = np.zeros((1, type_size), dtype=np.uint8)
        assert gguf.quants.dequantize(data, qtype).size == block, name
