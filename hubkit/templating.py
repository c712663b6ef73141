"""One Jinja environment for everything hubkit renders (cards, manifests, task configs).

Templates are files under `templates/` (shipped as `hubkit.templates`); a user's template
directory, when given, is searched first, so overriding one partial needs only that partial.
`StrictUndefined` turns a missing variable into an error instead of an empty string, and
rendering is deterministic: same inputs, same bytes.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import jinja2
import yaml


def builtin_template_dir() -> Path:
    return Path(str(files("hubkit.templates")))


def _yaml_scalar(value) -> str:
    """A value as a one-line YAML scalar (quoted when YAML would otherwise change its type)."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").strip()


@lru_cache(maxsize=8)
def environment(template_dir: str | None = None) -> jinja2.Environment:
    search = [template_dir] if template_dir else []
    search.append(str(builtin_template_dir()))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["yaml"] = _yaml_scalar
    env.filters["json"] = lambda v: json.dumps(v, sort_keys=True)
    return env


def render_template(template_name: str, template_dir: str | Path | None = None, **context) -> str:
    """Render `template_name` (a path under the template directories) with `context`."""
    env = environment(str(template_dir) if template_dir else None)
    return env.get_template(template_name).render(**context)
