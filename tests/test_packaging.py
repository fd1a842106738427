"""Packaging: pyproject.toml and environment.yml declare the same dependencies."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: conda-forge names that differ from PyPI names
CONDA_NAMES = {"python-duckdb": "duckdb"}


def _split(spec: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", spec)
    name, version = match.group(1), match.group(2).replace(" ", "")
    return re.sub(r"\[.*\]", "", name).lower().replace("_", "-"), version


def test_environment_yml_and_pyproject_agree():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(_split(d) for d in project["dependencies"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name, version = _split(dep)
            if name not in ("python", "pip"):
                conda[CONDA_NAMES.get(name, name)] = version
    assert conda == pip, "environment.yml and pyproject.toml must list the same packages and version floors"
    assert any("-e ." in d for dep in env["dependencies"] if isinstance(dep, dict) for d in dep.get("pip", []))


def test_console_script_points_at_the_cli():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["kpi-report"] == "kpi_lib.cli:main"
    assert project["requires-python"] == ">=3.11"


def test_generated_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "/data/" in ignored and "/reports/" in ignored


def test_public_names_are_pinned_and_documented():
    import kpi_lib

    assert kpi_lib.__all__ == ["KpiError", "Settings", "Store", "Week", "load_frames", "load_settings", "parse_week",
                               "__version__"]
    assert all(getattr(kpi_lib, name, None) is not None for name in kpi_lib.__all__)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    marker = "(its `__all__`):"
    paragraph = readme[readme.index(marker) + len(marker):].split("\n\n")[0]
    documented = re.findall(r"`([A-Za-z_]+)`", paragraph.split(". ")[0])
    assert sorted(documented) == sorted(kpi_lib.__all__)


def test_the_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # PEP 639: a string, not the deprecated {text = ...} table


@pytest.mark.slow
def test_building_the_package_warns_of_nothing(tmp_path):
    """setuptools prints its deprecation warnings while it builds; pip -v shows them."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "kpi_lib", tmp_path / "kpi_lib", ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(tmp_path / "dist"),
                            str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    output = built.stdout + built.stderr
    assert not [line for line in output.splitlines() if "Warning" in line]
