"""The package as a user gets it: the sdist built from this checkout, the wheel built from that sdist,
installed into a fresh virtual environment, and run there.

uv (in the dev extra) builds and installs: it reaches only the package registry, and its cache makes
a repeat run take seconds. The versions the registry and the Claude Desktop bundle publish are kept
equal to the package's by tests/test_install_surfaces.py; the Python versions claimed here are checked
by mypy and ruff, which pyproject sets to the oldest one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
STEP_SECONDS = 300
"""A first run downloads the build backend and the dependencies; later ones come from uv's cache."""


def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=STEP_SECONDS,
        check=False,
        env=env,
        cwd=cwd,
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def clean_env(**env: str) -> dict[str, str]:
    """This process's environment without this virtual environment or any kling-mcp setting."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if name != "VIRTUAL_ENV" and not name.startswith(("ACEDATACLOUD_", "KLING_", "UV_PROJECT"))
    }
    return {**kept, **env}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is missing: it is in the dev extra (pip install -e '.[dev]')"
    out = tmp_path_factory.mktemp("dist")
    run(uv, "build", "--out-dir", out, ROOT, env=clean_env())  # the sdist, then the wheel from it
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripts directory of a fresh virtual environment with only the wheel and its dependencies."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    run(uv, "venv", "--python", sys.executable, venv, env=clean_env())
    python = venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    (wheel,) = dist.glob("*.whl")
    run(uv, "pip", "install", "--python", python, wheel, env=clean_env())
    return python.parent


def test_sdist_and_wheel_carry_the_package_version(dist: Path) -> None:
    version = project()["project"]["version"]

    built = sorted(path.name for path in [*dist.glob("*.tar.gz"), *dist.glob("*.whl")])
    assert built == [f"kling_mcp-{version}-py3-none-any.whl", f"kling_mcp-{version}.tar.gz"]


def test_sdist_holds_what_builds_the_package_and_the_wheel_its_files(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as archive:
        tops = {PurePosixPath(name).parts[1] for name in archive.getnames() if "/" in name}
    with zipfile.ZipFile(wheel) as archive:
        packaged = set(archive.namelist())
    sources = {
        path.relative_to(ROOT / "src").as_posix() for path in (ROOT / "src").rglob("*") if path.is_file()
    }

    assert tops <= {"src", "README.md", "LICENSE", "pyproject.toml", "PKG-INFO", ".gitignore"}, tops
    assert {name for name in sources if "__pycache__" not in name} <= packaged


def test_the_installed_command_runs_and_knows_its_version(installed: Path, tmp_path: Path) -> None:
    command = installed / "kling-mcp"

    usage = run(command, "--help", env=clean_env(), cwd=tmp_path)
    assert usage.startswith("usage: kling-mcp")
    assert {"emulator", "try", "doctor"} <= set(re.findall(r"^    (\w+) ", usage, re.MULTILINE))
    assert run(command, "--version", env=clean_env(), cwd=tmp_path).strip() == (
        f"kling-mcp {project()['project']['version']}"
    )


def test_doctor_of_a_fresh_install_passes_and_its_entries_start_that_install(
    installed: Path, tmp_path: Path
) -> None:
    """No uvx, no checkout: the entries name the installed console script, and it starts."""
    script = installed / "kling-mcp"
    env = clean_env(
        HOME=str(tmp_path),
        PATH=str(installed),
        KLING_DATA_DIR=str(tmp_path / "data"),
        KLING_OUTPUT_DIR=str(tmp_path / "videos"),
    )
    report = run(script, "doctor", "--demo", env=env, cwd=tmp_path)

    assert report.rstrip().endswith("All is well."), report
    assert f"[ ok ] Entries below: {script} starts and lists" in report
    assert f'"command": "{script}"' in report
    entries = report[report.index("\nClaude Desktop (") :]
    assert "uvx" not in entries


def test_the_oldest_python_claimed_is_the_one_checked() -> None:
    claimed = re.fullmatch(r">=3\.(\d+)", project()["project"]["requires-python"])
    assert claimed, project()["project"]["requires-python"]
    oldest = int(claimed.group(1))
    tools = project()["tool"]

    assert tools["ruff"]["target-version"] == f"py3{oldest}"
    assert tools["mypy"]["python_version"] == f"3.{oldest}"
