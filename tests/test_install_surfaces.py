"""The ways to install kling-mcp besides a config entry: the Claude Desktop extension bundle
(manifest.json, scripts/build_mcpb.py), the official MCP registry (server.json), Glama
(glama.json) and the Dockerfile.

Each is checked against what it describes, so none can drift: the package's version, name and
console script (pyproject.toml), and the settings the server really reads (`Settings.from_env`).
The manifest is validated by the `mcpb` tool itself (`npm ci --prefix tests/npm`), and the bundle
is unpacked and started the way its manifest says, as an MCP stdio server that lists its tools.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
from mcp import Client, StdioServerParameters

from kling_mcp.domain.capabilities import VIDEO_MODELS, AspectRatio, Mode
from kling_mcp.settings import LOG_LEVELS, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
MCPB = ROOT / "tests" / "npm" / "node_modules" / ".bin" / "mcpb"
REGISTRY_SCHEMA = ROOT / "tests" / "schemas" / "mcp-registry-server-2025-12-11.schema.json"
TOKENS = {"ACEDATACLOUD_API_TOKEN", "ACEDATACLOUD_PLATFORM_TOKEN"}
SECRETS = {*TOKENS, "KLING_DATABASE_URL"}
"""Settings whose values must be kept secret: the tokens, and a database URL with its password."""

sys.path.insert(0, str(ROOT / "scripts"))
from build_mcpb import build_bundle, bundle_files  # noqa: E402


def load(name: str) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((ROOT / name).read_text("utf-8"))
    return content


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


class Recorder(dict[str, str]):
    """An empty environment that remembers every variable asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)


def settings_read() -> set[str]:
    env = Recorder()
    Settings.from_env(env)
    return env.asked


def readme_settings() -> set[str]:
    readme = (ROOT / "README.md").read_text("utf-8")
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, re.MULTILINE))


def test_the_readme_settings_table_lists_what_the_server_reads() -> None:
    assert readme_settings() == settings_read()


# --- Claude Desktop extension (manifest.json, .mcpb) ----------------------------------------


def run_mcpb(*args: str) -> subprocess.CompletedProcess[str]:
    assert MCPB.exists(), "the mcpb tool is missing: run `npm ci --prefix tests/npm`"
    return subprocess.run(
        [str(MCPB), *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


def test_mcpb_validates_the_manifest() -> None:
    done = run_mcpb("validate", str(ROOT / "manifest.json"))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "passes" in done.stdout


def test_mcpb_rejects_a_broken_manifest(tmp_path: Path) -> None:
    manifest = load("manifest.json")
    del manifest["server"]["entry_point"]
    broken = tmp_path / "manifest.json"
    broken.write_text(json.dumps(manifest))

    assert run_mcpb("validate", str(broken)).returncode != 0


def test_manifest_matches_the_package(project: dict[str, Any]) -> None:
    manifest = load("manifest.json")

    assert manifest["manifest_version"] == "0.4"
    assert manifest["version"] == project["project"]["version"]
    assert manifest["name"] == project["project"]["name"]
    assert manifest["server"]["type"] == "uv"
    assert (ROOT / manifest["server"]["entry_point"]).is_file()
    command = manifest["server"]["mcp_config"]["args"]
    assert command[-1] in project["project"]["scripts"]


def test_manifest_user_config_maps_into_the_servers_settings() -> None:
    manifest = load("manifest.json")
    user_config = manifest["user_config"]
    env = manifest["server"]["mcp_config"]["env"]
    mapped = {
        name: re.fullmatch(r"\$\{user_config\.(\w+)\}", value).group(1)  # type: ignore[union-attr]
        for name, value in env.items()
    }

    assert set(mapped) == {
        "ACEDATACLOUD_API_TOKEN",
        "KLING_DEFAULT_TIMEOUT",
        "KLING_DEFAULT_MODEL",
        "KLING_OUTPUT_DIR",
    }
    assert set(mapped) <= settings_read()
    assert set(mapped.values()) == set(user_config)
    token = user_config[mapped["ACEDATACLOUD_API_TOKEN"]]
    assert token["sensitive"] is True
    assert user_config[mapped["KLING_OUTPUT_DIR"]]["type"] == "directory"
    optional = [mapped[name] for name in ("KLING_DEFAULT_TIMEOUT", "KLING_DEFAULT_MODEL", "KLING_OUTPUT_DIR")]
    assert not any(user_config[key].get("required") for key in optional)
    defaults = {name: str(user_config[key].get("default", "")) for name, key in mapped.items()}
    assert Settings.from_env(defaults) == Settings.from_env({})


@pytest.fixture(scope="module")
def unpacked_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    bundle = build_bundle(ROOT, out)
    assert bundle.name == f"kling-mcp-{load('manifest.json')['version']}.mcpb"
    target = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(target)
    return target


def test_bundle_holds_the_manifest_and_the_project_without_caches(unpacked_bundle: Path) -> None:
    names = {
        path.relative_to(unpacked_bundle).as_posix() for path in unpacked_bundle.rglob("*") if path.is_file()
    }

    assert {"manifest.json", "pyproject.toml", "README.md", "LICENSE", "src/kling_mcp/__init__.py"} <= names
    assert load("manifest.json")["server"]["entry_point"] in names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert names == {path.as_posix() for path in bundle_files(ROOT)}
    assert run_mcpb("validate", str(unpacked_bundle / "manifest.json")).returncode == 0


@pytest.mark.anyio
async def test_bundle_starts_the_server_its_manifest_describes(unpacked_bundle: Path) -> None:
    manifest = json.loads((unpacked_bundle / "manifest.json").read_text("utf-8"))
    config = manifest["server"]["mcp_config"]
    defaults = {key: str(option.get("default", "")) for key, option in manifest["user_config"].items()}

    def fill(value: str) -> str:
        value = value.replace("${__dirname}", str(unpacked_bundle))
        return re.sub(r"\$\{user_config\.(\w+)\}", lambda found: defaults[found.group(1)], value)

    env = {**os.environ, **{name: fill(value) for name, value in config["env"].items()}}
    env.pop("VIRTUAL_ENV", None)
    server = StdioServerParameters(
        command=uv(config["command"]), args=[*map(fill, config["args"]), "--demo"], env=env
    )
    async with Client(server, read_timeout_seconds=240) as client:
        tools = await client.list_tools()

    served = {tool.name for tool in tools.tools}
    declared = {tool["name"] for tool in manifest["tools"]}
    assert declared == served, "manifest.json's tools must be the server's tools"


def uv(command: str) -> str:
    """`uv` from PATH, or the one installed beside this Python (pip install uv)."""
    found = shutil.which(command) or shutil.which(command, path=str(Path(sys.executable).parent))
    assert found, f"{command} is missing: pip install uv"
    return found


# --- The official MCP registry (server.json) and Glama (glama.json) -------------------------


def test_server_json_is_valid_for_the_registry() -> None:
    schema = json.loads(REGISTRY_SCHEMA.read_text("utf-8"))
    server = load("server.json")

    assert server["$schema"] == schema["$id"]
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert [error.message for error in validator.iter_errors(server)] == []


def test_server_json_matches_the_package(project: dict[str, Any]) -> None:
    server = load("server.json")
    (package,) = server["packages"]

    assert server["version"] == package["version"] == project["project"]["version"]
    assert server["name"].endswith(f"/{project['project']['name']}")
    assert package["identifier"] == project["project"]["name"]
    assert (package["registryType"], package["runtimeHint"]) == ("pypi", "uvx")
    assert package["transport"] == {"type": "stdio"}


def test_server_json_describes_every_setting_the_server_reads() -> None:
    (package,) = load("server.json")["packages"]
    variables = {variable["name"]: variable for variable in package["environmentVariables"]}

    assert set(variables) == settings_read()
    assert {name for name, variable in variables.items() if variable.get("isSecret")} == SECRETS
    assert all(variable["description"].strip() for variable in variables.values())
    for name, variable in variables.items():
        if "default" in variable:
            assert Settings.from_env({name: variable["default"]}) == Settings.from_env({}), name
    choices = {name: variable["choices"] for name, variable in variables.items() if "choices" in variable}
    assert choices == {
        "KLING_DEFAULT_MODEL": list(VIDEO_MODELS),
        "KLING_DEFAULT_MODE": list(get_args(Mode)),
        "KLING_DEFAULT_ASPECT_RATIO": list(get_args(AspectRatio)),
        "LOG_LEVEL": list(LOG_LEVELS),
        "KLING_AUTO_DOWNLOAD": ["1", "0"],
        "KLING_DEMO": ["0", "1"],
    }
    assert {Settings.from_env({"KLING_DEMO": flag}).demo for flag in choices["KLING_DEMO"]} == {False, True}


def test_glama_json_names_its_schema_and_maintainers() -> None:
    glama = load("glama.json")

    assert glama["$schema"] == "https://glama.ai/mcp/schemas/server.json"
    assert glama["maintainers"]
    assert all(isinstance(name, str) and name for name in glama["maintainers"])


# --- Dockerfile -----------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    found = (line.strip().split(None, 1) for line in text.splitlines())
    return [
        (parts[0].upper(), parts[1]) for parts in found if len(parts) == 2 and not parts[0].startswith("#")
    ]


def test_dockerfile_runs_the_console_script_as_a_non_root_user(project: dict[str, Any]) -> None:
    steps = instructions()
    (entrypoint,) = [json.loads(value) for name, value in steps if name == "ENTRYPOINT"]
    users = [value for name, value in steps if name == "USER"]
    base = next(value for name, value in steps if name == "FROM")

    assert entrypoint == list(project["project"]["scripts"])
    assert users
    assert users[-1] not in ("root", "0")
    assert re.fullmatch(r"python:3\.(1[0-9])-slim", base)
    assert [name for name, _ in steps].index("USER") > max(
        i for i, (name, _) in enumerate(steps) if name == "RUN"
    )


def test_dockerfile_copies_what_the_build_needs_and_dockerignore_keeps_the_rest_out(
    project: dict[str, Any],
) -> None:
    copied = {
        source
        for name, value in instructions()
        if name == "COPY"
        for source in value.split()[:-1]
        if not source.startswith("--")
    }
    needed = {"pyproject.toml", project["project"]["readme"], *project["project"]["license-files"]}
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines() if line.strip()
    ]

    assert needed <= copied
    assert all(
        any(package == source or package.startswith(f"{source}/") for source in copied)
        for package in packages
    )
    assert {".venv", ".git"} <= set(ignored)
    for path in [*needed, *packages]:
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), path
