"""pyproject.toml is the truth; environment.yml must list the same requirements."""

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = set(project["dependencies"]) | set(extras["test"]) | set(extras["ray"])
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_list = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {p.split("#")[0].strip() for p in pip_list if not p.startswith("-e")}
    assert listed == wanted, f"only in pyproject: {wanted - listed}; only in environment.yml: {listed - wanted}"
    assert "-e ." in pip_list


def test_forbidden_dependencies_absent():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    every = list(project["dependencies"]) + [d for ds in project["optional-dependencies"].values() for d in ds]
    names = {d.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower() for d in every}
    # torchvision breaks beside the CPU torch wheel; salesforce-lavis replaces torch and breaks numpy 2.
    assert not names & {"torchvision", "salesforce-lavis"}
    assert "torch==2.13.0" in project["dependencies"]
