"""Build `dist/kling-mcp-<version>.mcpb`, the Claude Desktop extension bundle.

A bundle is a zip with `manifest.json` at its root (the MCPB format). The manifest's server type
is `uv`: the host installs Python and the dependencies from the bundle's own `pyproject.toml`, so
the bundle carries only the project's files: the manifest, pyproject.toml, README.md, LICENSE and
the `src/kling_mcp` package.

    python scripts/build_mcpb.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP_LEVEL_FILES = ("manifest.json", "pyproject.toml", "README.md", "LICENSE")
PACKAGE = Path("src") / "kling_mcp"


class BundleError(Exception):
    """The bundle cannot be built as the files stand; the message says what to change."""


def project_version(root: Path) -> str:
    found = re.search(r'^version\s*=\s*"([^"]+)"', (root / "pyproject.toml").read_text("utf-8"), re.MULTILINE)
    if not found:
        raise BundleError(f'{root / "pyproject.toml"} has no version = "..." line in [project].')
    return found.group(1)


def bundle_files(root: Path) -> list[Path]:
    """What goes into the bundle, relative to `root`: no caches, no compiled files."""
    package = sorted(
        path.relative_to(root)
        for path in (root / PACKAGE).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return [Path(name) for name in TOP_LEVEL_FILES] + package


def build_bundle(root: Path, out_dir: Path) -> Path:
    """Write the bundle into `out_dir` and return its path."""
    version = project_version(root)
    manifest_version = json.loads((root / "manifest.json").read_text("utf-8")).get("version")
    if manifest_version != version:
        raise BundleError(
            f"manifest.json has version {manifest_version!r} but pyproject.toml has {version!r}: "
            "set manifest.json's version to the package's."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / f"kling-mcp-{version}.mcpb"
    with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in bundle_files(root):
            archive.write(root / name, name.as_posix())
    return bundle


def main() -> None:
    cli = argparse.ArgumentParser(description="Build the kling-mcp Claude Desktop extension (.mcpb).")
    cli.add_argument("--out", type=Path, default=ROOT / "dist", help="output directory (default dist/)")
    args = cli.parse_args()
    try:
        bundle = build_bundle(ROOT, args.out)
    except BundleError as error:
        sys.exit(f"build_mcpb: {error}")
    sys.stdout.write(f"{bundle}\n")


if __name__ == "__main__":
    main()
