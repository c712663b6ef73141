"""Building the Space folder: requirements the Hub can install, the same bytes whatever endpoint
or port it was built against, and an output folder that is replaced only when it is hubkit's."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from hubkit.cli import main
from hubkit.manifest import load_manifest
from hubkit.space_build import MARKER, SpaceError, build_space


@pytest.fixture
def project(demo_world, tmp_path):
    """A copy of the demo project: the refusals below are checked against folders that would be
    lost if they were not refused."""
    root = tmp_path / "proj"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", ".hubkit", "merged", "space"))
    return root


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _requirements(folder: Path) -> list[Requirement]:
    reqs = []
    for raw in (folder / "requirements.txt").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("-"), f"pip option in requirements.txt (index, find-links, editable): {line}"
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as exc:  # a bare path or URL is not a requirement
            pytest.fail(f"not a requirement a Hub build can install: {line!r} ({exc})")
    return reqs


# -- requirements --------------------------------------------------------------------------------


def test_requirements_install_from_a_public_index(demo_world, tmp_path):
    folder = build_space(load_manifest(demo_world.paths.manifest), tmp_path / "space").out
    reqs = _requirements(folder)
    names = {r.name.lower().replace("_", "-") for r in reqs}
    assert {"torch", "transformers", "peft", "huggingface-hub"} <= names
    assert "gradio" not in names, "gradio comes from the README's sdk_version on Spaces"
    for r in reqs:
        assert r.url is None, r
        for spec in r.specifier:
            v = Version(spec.version.rstrip(".*"))
            assert v.local is None and "+" not in spec.version, f"local version label: {r}"
            assert not v.is_devrelease, f"dev release: {r}"
            if spec.operator in ("==", "==="):
                # pinned: the version tested here, which this machine installed from an index
                assert spec.version == version(r.name), r
        if r.name == "torch":
            assert not any(s.operator in ("==", "===") for s in r.specifier), f"torch pinned to one build: {r}"
    card = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert card["sdk"] == "gradio" and card["sdk_version"] == str(Version(version("gradio")).public)
    assert "+" not in card["sdk_version"]


def test_versions_an_index_may_not_serve_become_ranges(demo_world, tmp_path, monkeypatch):
    """A local build (`+cpu`), a dev version and a package installed from a folder are never
    pinned: the requirement falls back to the oldest release the app works with."""
    import importlib.metadata as md

    real = md.distribution

    class Fake:
        def __init__(self, v, direct_url=None):
            self.version, self._direct = v, direct_url

        def read_text(self, name):
            return self._direct if name == "direct_url.json" else None

    fakes = {
        "torch": Fake("2.13.0+cpu"),
        "transformers": Fake("5.25.0.dev0"),
        "peft": Fake("0.21.2", json.dumps({"url": "file:///src/peft", "dir_info": {"editable": True}})),
        "gradio": Fake("6.32.0+local"),
    }
    monkeypatch.setattr(md, "distribution", lambda name: fakes.get(name) or real(name))
    monkeypatch.setattr(md, "version", lambda name: fakes[name].version if name in fakes else real(name).version)
    folder = build_space(load_manifest(demo_world.paths.manifest), tmp_path / "space").out
    by_name = {r.name: r for r in _requirements(folder)}
    for name in ("torch", "transformers", "peft"):
        assert {s.operator for s in by_name[name].specifier} == {">="}, by_name[name]
    assert by_name["pandas"].specifier == f"=={version('pandas')}"
    lines = [line for line in (folder / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert not any("+" in line or "dev" in line for line in lines), lines
    sdk = yaml.safe_load((folder / "README.md").read_text().split("---")[1])["sdk_version"]
    assert "+" not in sdk


# -- the same bytes wherever it was built for ---------------------------------------------------


def test_builds_against_different_endpoints_are_byte_identical(demo_world, tmp_path):
    manifest = load_manifest(demo_world.paths.manifest)
    a = build_space(manifest, tmp_path / "a", endpoint="http://127.0.0.1:41873").out
    b = build_space(manifest, tmp_path / "b", endpoint="http://127.0.0.1:59211").out
    c = build_space(manifest, tmp_path / "c").out  # no endpoint: HF_ENDPOINT's default
    assert _tree(a) == _tree(b) == _tree(c)
    for name, data in _tree(a).items():
        text = data.decode()
        assert "127.0.0.1" not in text and "41873" not in text, name
        if name in ("README.md", "space_config.json"):
            assert "huggingface.co" not in text, "the Hub the Space runs on decides its links"
    config = json.loads((a / "space_config.json").read_text())
    for model in [config["base"], *config["adapters"]]:
        assert set(model) >= {"repo_id", "revision"} and "url" not in model and "path" not in model


def test_deployed_folder_does_not_change_with_the_hubs_port(demo_world, tmp_path):
    """What `make demo` does twice: deploy the same manifest to a hub on a new port. The files
    sent are the same bytes, so a persistent Space repo would get no new commit."""
    from hubkit.hub.server import LocalHub
    from hubkit.space_build import deploy_space

    root = tmp_path / "proj"
    shutil.copytree(demo_world.paths.root, root, ignore=shutil.ignore_patterns("runs", ".hubkit", "merged"))
    manifest = load_manifest(root / "hubkit.yaml")
    trees = []
    for n in range(2):
        with LocalHub(tmp_path / f"hub{n}") as hub:
            deploy_space(manifest, endpoint=hub.url)
            trees.append(_tree(root / ".hubkit" / "space-deploy"))
            port = hub.url.rsplit(":", 1)[1]
            assert not any(hub.url in v.decode() or f":{port}" in v.decode() for v in trees[-1].values())
    assert trees[0] == trees[1]


# -- the output folder ---------------------------------------------------------------------------


def _cli_build(project: Path, out: str, capsys) -> tuple[int, str]:
    code = main(["space", "build", "-m", str(project / "hubkit.yaml"), "--out", out])
    return code, capsys.readouterr().err


def _assert_one_line_refusal(err: str, *names: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    assert len(lines) == 2 and lines[1].startswith("hint: "), err
    for name in names:
        assert name in lines[0], (name, err)


def test_out_dot_refuses_to_replace_the_project(project, capsys, monkeypatch):
    before = _tree(project)
    monkeypatch.chdir(project)
    code, err = _cli_build(project, ".", capsys)
    assert code != 0
    _assert_one_line_refusal(err, "--out .", "manifest's folder")
    assert _tree(project) == before


def test_out_a_parent_of_the_project_is_refused(project, capsys):
    sibling = project.parent / "keep.txt"
    sibling.write_text("mine")
    code, err = _cli_build(project, str(project.parent), capsys)
    assert code != 0 and "holds the manifest's folder" in err
    assert sibling.read_text() == "mine" and (project / "hubkit.yaml").is_file()


def test_out_the_manifest_dir_is_refused(project, capsys):
    before = _tree(project)
    code, err = _cli_build(project, str(project), capsys)
    assert code != 0
    _assert_one_line_refusal(err, str(project), "is the manifest's folder")
    assert _tree(project) == before


def test_out_holding_an_input_is_refused(project, tmp_path):
    """A base model kept outside the project: an --out above it would delete it."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.move(str(project / "base"), models / "tiny")
    data = yaml.safe_load((project / "hubkit.yaml").read_text())
    for art in data["artifacts"].values():
        if art.get("base_model_path"):
            art["base_model_path"] = str(models / "tiny")
    (project / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    before = _tree(models)
    with pytest.raises(SpaceError, match="holds an input of the build"):
        build_space(load_manifest(project / "hubkit.yaml"), models)
    assert _tree(models) == before


def test_out_a_folder_with_user_files_is_refused(project, tmp_path, capsys):
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "todo.md").write_text("keep me")
    (out / "app.py").write_text("# my own app")
    code, err = _cli_build(project, str(out), capsys)
    assert code != 0
    _assert_one_line_refusal(err, str(out), MARKER)
    assert "empty or remove it yourself" in err
    assert (out / "notes" / "todo.md").read_text() == "keep me" and (out / "app.py").read_text() == "# my own app"
    assert not list(tmp_path.glob(".mine.*")), "no partial build left beside it"


def test_rebuild_replaces_hubkits_own_folder(project, tmp_path, capsys):
    out = tmp_path / "space"
    assert _cli_build(project, str(out), capsys)[0] == 0
    first = _tree(out)
    assert json.loads(first[MARKER])["built_by"] == "hubkit space build"
    (out / "serve.log").write_text("old log")
    (out / "stale.txt").write_text("from an older build")
    data = yaml.safe_load((project / "hubkit.yaml").read_text())
    data.setdefault("space", {})["title"] = "Rebuilt"
    (project / "hubkit.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, err = _cli_build(project, str(out), capsys)
    assert code == 0, err
    assert not (out / "stale.txt").exists() and not (out / "serve.log").exists()
    assert json.loads((out / "space_config.json").read_text())["title"] == "Rebuilt"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".space")], "no partial or old folder left beside it"


def test_an_empty_folder_and_a_build_from_before_the_marker_are_replaced(project, tmp_path):
    manifest = load_manifest(project / "hubkit.yaml")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (build_space(manifest, empty).out / "app.py").is_file()
    old = build_space(manifest, tmp_path / "old").out
    (old / MARKER).unlink()  # as hubkit wrote it before the marker existed
    (old / "serve.log").write_text("served once")
    assert (build_space(manifest, old).out / MARKER).is_file()
