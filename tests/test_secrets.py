"""Redaction: tokens go, ordinary settings whose names merely end in 'token' stay."""

from hubkit.secrets import REDACTED, redact, redact_text, split_secret_args

TOKEN = "hf_" + "abcdefghijklmnopqrstuvwxyz12"


def test_split_keeps_tokenizer_settings():
    clean, secrets = split_secret_args({"token": TOKEN, "add_bos_token": True, "pad_token": "<pad>", "dtype": "float32"})
    assert clean == {"add_bos_token": True, "pad_token": "<pad>", "dtype": "float32"}
    assert secrets == {"token": TOKEN}


def test_redact_nested_and_by_pattern(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "Q" * 30)
    data = {"token": "x" * 10, "args": ["--model_args", f"pretrained=a,token={TOKEN}"], "note": "key " + "hf_" + "Q" * 30, "add_bos_token": True}
    out = redact(data)
    assert out["token"] == REDACTED and out["add_bos_token"] is True
    assert TOKEN not in str(out) and "Q" * 30 not in str(out)


def test_short_values_are_never_scrubbed():
    assert redact_text("add_bos_token=True", extra=["True"]) == "add_bos_token=True"
