"""Typed errors. Each carries what a user needs to act: the file, the field, the next step.

The CLI turns any `HubkitError` into one line on stderr plus its hint, and exits with its
`exit_code` (the codes are listed in `hubkit.errortable.EXIT_CODES`); what other libraries raise
goes through the same table.
"""

from __future__ import annotations

from pathlib import Path


class HubkitError(Exception):
    """Base of every error hubkit raises on purpose.

    `hint` is the next step for the user; `exit_code` is what the CLI exits with (the class's,
    unless one is given).
    """

    exit_code = 1
    default_hint: str | None = None

    def __init__(self, message: str, *, hint: str | None = None, path: str | Path | None = None, exit_code: int | None = None):
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.path = str(path) if path is not None else None
        if exit_code is not None:  # one error of a family can be another kind (a merge refused for lack of disk: 4)
            self.exit_code = exit_code
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ManifestError(HubkitError):
    """The manifest is missing, unreadable or invalid. `problems` lists every field at fault."""

    exit_code = 2
    default_hint = "Fix the fields above; `hubkit schema` prints the manifest's JSON Schema."

    def __init__(self, message: str, *, problems: list[str] | None = None, **kwargs):
        self.problems = problems or []
        super().__init__(message, **kwargs)

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        return "\n".join(self.problems)


class UsageError(HubkitError):
    """A command-line value is wrong (a malformed --repo-id, a refused flag): exit code 2, like
    click's own usage errors."""

    exit_code = 2


class InspectError(HubkitError):
    """A file or directory is not what it should be (missing config, corrupt weights...)."""

    exit_code = 2


class EvalError(HubkitError):
    """An evaluation could not run or produced no usable result."""


class EnvError(EvalError):
    """A pinned environment could not be created or does not match its pins."""


class MergeError(HubkitError):
    """A LoRA merge was refused or failed."""


class CardError(HubkitError):
    """A card could not be rendered, or failed its checks."""


class PublishError(HubkitError):
    """A push to the Hub was refused (by us, for safety) or failed (by the Hub)."""

