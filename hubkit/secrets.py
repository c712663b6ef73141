"""Keep tokens out of everything hubkit writes or prints: commands, logs, records, cards, plans."""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "***"
# Hugging Face user/org tokens, and the generic shapes of other common secrets.
TOKEN_PATTERNS = [
    re.compile(r"hf_[A-Za-z0-9]{20,}"),
    re.compile(r"api_org_[A-Za-z0-9]{20,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
]
# Exact names only: a substring match would also catch `add_bos_token` or `pad_token`.
SECRET_KEYS = re.compile(
    r"^(token|hf_token|use_auth_token|auth_token|access_token|api_key|apikey|password|secret|client_secret)$",
    re.IGNORECASE,
)
MIN_SECRET_LEN = 8  # never scrub short literals like "True" because a secret happened to equal them
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN")


def known_tokens() -> list[str]:
    """Token values present in this process's environment (so they can be scrubbed literally)."""
    return [v for k in TOKEN_ENV_VARS if (v := os.environ.get(k)) and len(v) >= MIN_SECRET_LEN]


def redact_text(text: str, extra: list[str] | None = None) -> str:
    for value in [*known_tokens(), *(extra or [])]:
        if value and len(value) >= MIN_SECRET_LEN:
            text = text.replace(value, REDACTED)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return text


def redact(obj: Any, extra: list[str] | None = None) -> Any:
    """A copy of `obj` (JSON-like) with secret-named keys blanked and token strings scrubbed."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(k, str) and SECRET_KEYS.search(k) and v not in (None, "", False) else redact(v, extra)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v, extra) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, extra)
    return obj


def split_secret_args(model_args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Separate secret-named model_args (e.g. `token`) from the rest.

    The secrets travel to the eval process through its environment, never on a command line
    that lm-eval would copy into its results file.
    """
    clean, secrets = {}, {}
    for key, value in model_args.items():
        if SECRET_KEYS.search(key):
            secrets[key] = str(value)
        else:
            clean[key] = value
    return clean, secrets
