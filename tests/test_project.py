"""The project's own metadata: environment.yml mirrors pyproject.toml; the layout is fixed."""

import re

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert project["requires-python"].lstrip(">=") in python
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pinned = {_name(r): r.replace(" ", "") for r in pip if not r.startswith("-e")}
    declared = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    assert pinned == declared
    assert "-e .[all]" in pip
    assert set(project["optional-dependencies"]) >= {"test", "data", "book", "repro", "all"}


def test_top_level_layout():
    expected = {
        "book",
        "notebooks",
        "rhel_lib",
        "data_dir",
        "_config.yml",
        "_toc.yml",
        "environment.yml",
        "tests",
        "pyproject.toml",
        "README.md",
        "Makefile",
        ".ci",
        "benchmarks",
    }
    present = {p.name for p in ROOT.iterdir()}
    assert expected <= present, expected - present
    assert "make test" in (ROOT / ".ci" / "run").read_text().splitlines()


def test_library_does_not_read_shared_folder():
    for path in (ROOT / "rhel_lib").rglob("*.py"):
        assert "../shared" not in path.read_text(), path
