"""Machine paths out of what leaves the machine.

Run records name this machine's folders (the adapter path lm-eval was given, the env's python,
the cache a merge went to). In a published record or a card's reproduce command they would show a
user's home layout and help nobody: they become paths relative to the manifest (`./adapters/x`,
which is where the files are in the user's project), or `$HUBKIT_HOME`, `$HF_HUB_CACHE`, `~`.
"""

from __future__ import annotations

import re
from pathlib import Path


def machine_paths(root: Path) -> list[tuple[str, str]]:
    """(absolute path, portable label) pairs, the most specific first. This interpreter (the
    `--env current` evals ran with it) becomes `python`, its environment `$VIRTUAL_ENV`."""
    import sys

    from huggingface_hub import constants

    from .eval.envs import hubkit_home

    pairs = [(root.resolve(), "."), (Path(constants.HF_HUB_CACHE).resolve(), "$HF_HUB_CACHE"), (hubkit_home().resolve(), "$HUBKIT_HOME"), (Path.home().resolve(), "~")]
    if root.absolute() != root.resolve():
        pairs.append((root.absolute(), "."))
    pairs.append((Path(sys.executable), "python"))
    if sys.prefix != sys.base_prefix:  # a virtualenv (a system prefix like /usr is no label's)
        pairs.append((Path(sys.prefix), "$VIRTUAL_ENV"))
    out = [(str(p), label) for p, label in pairs if str(p) not in ("/", "")]
    return sorted(dict(out).items(), key=lambda x: -len(x[0]))


def portable(text: str, places: list[tuple[str, str]], *, mangled: bool = False) -> str:
    """`text` with each machine path replaced by its label (whole path components only). With
    `mangled`, also lm-eval's output folder names, which are the model path with "/" -> "__"."""
    for path, label in places:
        text = re.sub(re.escape(path) + r"(?![\w.\-])", lambda _: label, text)
        if mangled:
            text = text.replace(path.replace("/", "__") + "__", "" if label == "." else label.strip("$~") + "__")
    return text


def portable_command(command: str, root: Path) -> str:
    """A recorded command as a card shows it: `python -m lm_eval ...` with paths relative to the
    manifest, instead of this machine's interpreter and folders."""
    command = re.sub(r"^\S*/python[\d.]*(?=\s)", "python", command)
    return portable(command, machine_paths(root))
