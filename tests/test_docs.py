"""The README and .env.example tell the truth about the server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kling_mcp.server.app import create_server
from kling_mcp.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
ENV_EXAMPLE = (ROOT / ".env.example").read_text()


def table_names(prefix: str) -> list[str]:
    """The first-column `names` of the README's table rows that start with `prefix`."""
    return re.findall(rf"^\| `({prefix}[A-Z_a-z]+)` \|", README, flags=re.MULTILINE)


def readme_settings() -> list[str]:
    return table_names("ACEDATACLOUD_") + table_names("KLING_") + table_names("LOG_")


@pytest.mark.anyio
async def test_readme_tool_table_is_the_servers_tool_list() -> None:
    tools = await create_server(Settings()).list_tools()

    assert sorted(table_names("kling_")) == sorted(tool.name for tool in tools)


def test_env_example_lists_exactly_the_documented_settings() -> None:
    example = re.findall(r"^([A-Z_]+)=", ENV_EXAMPLE, flags=re.MULTILINE)

    assert sorted(example) == sorted(readme_settings())


def test_env_example_as_written_is_a_valid_configuration() -> None:
    values = dict(re.findall(r"^([A-Z_]+)=(.*)$", ENV_EXAMPLE, flags=re.MULTILINE))

    assert Settings.from_env(values) == Settings()


@pytest.mark.parametrize("variable", [name for name in readme_settings() if not name.endswith("_TOKEN")])
def test_every_documented_setting_is_read(variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: "not-a-valid-value"})
