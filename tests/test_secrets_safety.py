"""The one secret scanner (hubkit.secrets): tokens split across the chunks a large file is read
in, memory that stays at a chunk, safetensors read through their header only, and the same
patterns used to scrub what hubkit writes."""

from __future__ import annotations

import io
import json
import struct
import tracemalloc

import pytest

from hubkit.secrets import CHUNK, REDACTED, redact_text, scan_bytes, scan_file, scan_stream

TOKEN = "hf_" + "SplitSplitSplit0123456789abcdefgh"


@pytest.mark.parametrize("shift", range(-len(TOKEN) - 1, 2))
def test_a_token_straddling_any_chunk_boundary_is_found(shift):
    chunk = 64
    filler = b"x" * (4 * chunk)
    at = 2 * chunk + shift
    data = filler[:at] + TOKEN.encode() + filler[at:]
    found = scan_stream(io.BytesIO(data), chunk_size=chunk)
    assert found is not None and found.kind == "Hugging Face token" and found.where == f"at byte {at:,}"


def test_memory_stays_at_about_one_chunk(tmp_path):
    big = tmp_path / "tokenizer.json"
    with big.open("wb") as fh:
        for i in range(24):
            fh.write(b'{"tok": %d}' % i * (CHUNK // 12))
        fh.write(TOKEN.encode())
    assert big.stat().st_size > 20 * CHUNK
    tracemalloc.start()
    try:
        found = scan_file(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert found is not None and found.kind == "Hugging Face token"
    assert peak < 4 * CHUNK, f"peak {peak / 1e6:.1f} MB for a {big.stat().st_size / 1e6:.0f} MB file"


def test_the_token_in_use_is_found_even_without_a_known_shape(tmp_path):
    secret = "my-self-hosted-hub-token-31337"
    f = tmp_path / "notes.txt"
    f.write_text(f"token: {secret}\n")
    assert scan_file(f) is None
    assert scan_file(f, extra=[secret]).kind == "token (the one in use)"


def test_safetensors_header_is_read_not_the_tensors(tmp_path):
    header = json.dumps({"__metadata__": {"format": "pt"}, "w": {"dtype": "U8", "shape": [40], "data_offsets": [0, 40]}}).encode()
    f = tmp_path / "model.safetensors"
    f.write_bytes(struct.pack("<Q", len(header)) + header + TOKEN.encode()[:40].ljust(40, b"x"))
    assert scan_file(f) is None  # inside a tensor: weights, not text
    # a file that is not well-formed safetensors is scanned whole
    f.write_bytes(b"\xff" * 8 + TOKEN.encode())
    assert scan_file(f).kind == "Hugging Face token"


def test_scan_names_the_kind_never_the_value():
    found = scan_bytes(b"key=AKIAIOSFODNN7EXAMPLE")
    assert found.kind == "AWS access key id" and "AKIA" not in str(found)


def test_ordinary_model_files_do_not_look_like_secrets():
    text = json.dumps({"add_bos_token": True, "pad_token": "<pad>", "model_max_length": 4096, "chat_template": "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}", "hf_hub_revision": "main", "task-specific": "sk-learn"})
    assert scan_bytes(text.encode()) is None


def test_redaction_removes_a_whole_private_key_block():
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"
    out = redact_text(f"before\n{key}\nafter {TOKEN}")
    assert out == f"before\n{REDACTED}\nafter {REDACTED}"
