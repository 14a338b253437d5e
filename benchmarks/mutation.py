"""Mutation testing of the modules where a bug costs money, leaks a secret or loses data.

Run from the repository root with the development virtualenv (not part of the test suite, nor of CI):

    .venv/bin/python benchmarks/mutation.py                     # every module of MODULES: both cores
    .venv/bin/python benchmarks/mutation.py api/downloads.py    # one module (or several)
    .venv/bin/python benchmarks/mutation.py --jobs 1 api/uploads.py

mutmut (pinned in the dev extra) makes one small change at a time in a module (a comparison
flipped, a constant changed, an argument dropped...) and runs, against each change, the tests
that reached the changed function; a change that no test notices "survives": a bug the suite
would let through. Each module is tried with its own fast test files only (MODULES; the
PostgreSQL variants are left out, as each would start a cluster per mutant).

The run happens in a scratch copy of the project (the tracked and new files of the work tree,
without the npm folders) under --workdir, by default a fresh temporary directory: the work tree
is never changed. It prints each module's score and every surviving mutant's diff;
benchmarks/README.md keeps the latest figures and what each survivor means.

mutmut maps tests to functions in the test process only: code that runs solely inside a
subprocess the tests start (a hosted replica, a stdio server) has no test for it and is
reported as "no tests", not as killed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from run import markdown_table

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = "src/kling_mcp"
SQLITE_ONLY = ("-k", "not postgres")
MODULES: dict[str, tuple[str, ...]] = {
    "tasks/journal.py": ("tests/test_journal.py", "tests/test_reservation.py", *SQLITE_ONLY),
    "tasks/sqlite.py": ("tests/test_journal.py", "tests/test_reservation.py", *SQLITE_ONLY),
    "tasks/service.py": (
        "tests/test_service.py",
        "tests/test_reservation.py",
        "tests/test_budget.py",
        *SQLITE_ONLY,
    ),
    "domain/local_files.py": ("tests/test_local_files.py",),
    "api/uploads.py": ("tests/test_uploads.py",),
    "api/downloads.py": ("tests/test_downloads.py",),
    "server/hosting.py": ("tests/test_hosting_gate.py",),
}
"""Each module (under src/kling_mcp) and the pytest arguments that select its fast tests."""
NOT_COPIED = ("tests/browser/", "tests/npm/")
DETECTED = ("killed", "timeout", "caught by type check")
"""What counts for the score: a timeout is a mutant that made the tests hang, so they noticed it."""
TIMEOUT_MULTIPLIER = 2
SETTLE_LIMIT = "3"
"""Seconds a test waits for what the server does on its own (tests/emulated.py; 15 in the suite):
unmutated, every such wait here ends in well under a second, and a mutant that never gets there
fails the test in 3 s, killed, instead of hanging into the timeout."""
RESULT_LINE = re.compile(r"^\s+(\S+): (.+)$")


@dataclass(frozen=True)
class Score:
    module: str
    statuses: Counter[str]
    minutes: float

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def cells(self) -> list[str]:
        detected = sum(self.statuses[status] for status in DETECTED)
        percent = f"{100 * detected / self.total:.0f} %" if self.total else "-"
        return [
            self.module,
            str(self.total),
            str(self.statuses["killed"]),
            str(self.statuses["timeout"]),
            str(self.statuses["survived"]),
            str(self.statuses["no tests"]),
            percent,
            f"{self.minutes:.1f}",
        ]


HEADER = ("Module", "Mutants", "Killed", "Timeout", "Survived", "No tests", "Score", "Minutes")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--workdir", type=Path, help="where the scratch copies go (default: a temporary dir)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants tried at once (default 2)")
    options = parser.parse_args()
    options.modules = options.modules or list(MODULES)
    if unknown := set(options.modules) - set(MODULES):
        parser.error(f"not a module of MODULES: {', '.join(sorted(unknown))}")
    workdir = options.workdir or Path(tempfile.mkdtemp(prefix="kling-mutation-"))
    scores = [
        run_module(module, workdir / module.replace("/", "-"), options.jobs) for module in options.modules
    ]
    print()
    print(markdown_table(scores, HEADER))
    print(f"\nScratch copies (mutmut's own results, `mutmut browse` there) in {workdir}")


def run_module(module: str, scratch: Path, jobs: int) -> Score:
    """Mutate `module` in a scratch copy, try every mutant against its tests, report the survivors."""
    print(f"\n## {module}", flush=True)
    started = time.monotonic()
    copy_project(scratch)
    configure_mutmut(scratch, f"{PACKAGE}/{module}", MODULES[module])
    mutmut(scratch, "run", "--max-children", str(jobs))
    statuses = results(scratch)
    if timeouts := [name for name, status in statuses.items() if status == "timeout"]:
        # A busy machine can push a mutant past its time limit: the timeouts are tried once more.
        print(f"\nTrying the {len(timeouts)} timeouts once more", flush=True)
        mutmut(scratch, "run", "--max-children", str(jobs), *timeouts)
        statuses = results(scratch)
    for name, status in sorted(statuses.items()):
        if status not in DETECTED:
            print(f"\n### {status}: {name}")
            print(mutmut(scratch, "show", name, capture=True).strip())
    return Score(module, Counter(statuses.values()), (time.monotonic() - started) / 60)


def copy_project(scratch: Path) -> None:
    """The work tree as it is now (tracked files and new ones git does not ignore) into `scratch`."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    if scratch.exists():
        shutil.rmtree(scratch)
    for name in listed.split("\0"):
        source = REPOSITORY / name
        if name and not name.startswith(NOT_COPIED) and source.is_file():
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, scratch / name)


def configure_mutmut(scratch: Path, path: str, test_selection: Sequence[str]) -> None:
    """mutmut's settings, in a setup.cfg of the scratch copy (pyproject.toml has no [tool.mutmut])."""
    also_copy = sorted(entry.name for entry in scratch.iterdir() if entry.name not in ("src", "tests"))
    lines = [
        "[mutmut]",
        "source_paths = src",
        f"only_mutate = {path}",
        # A mutant is stopped once its tests run twice (not mutmut's 15 times) their usual time, plus 1 s.
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}",
        _listed("pytest_add_cli_args_test_selection", test_selection),
        _listed("also_copy", also_copy),
    ]
    (scratch / "setup.cfg").write_text("\n".join(lines) + "\n")


def _listed(key: str, values: Sequence[str]) -> str:
    return f"{key} =" + "".join(f"\n    {value}" for value in values)


def mutmut(scratch: Path, *arguments: str, capture: bool = False) -> str:
    command = [str(Path(sys.executable).parent / "mutmut"), *arguments]
    environment = {**os.environ, "KLING_TEST_SETTLE_LIMIT": SETTLE_LIMIT}
    done = subprocess.run(
        command, cwd=scratch, env=environment, capture_output=capture, text=True, check=False
    )
    if done.returncode != 0 and arguments[0] == "run":
        sys.exit(f"mutmut {' '.join(arguments)} failed (exit {done.returncode}) in {scratch}")
    return done.stdout or ""


def results(scratch: Path) -> dict[str, str]:
    """Each mutant's status, as mutmut recorded it."""
    listing = mutmut(scratch, "results", "--all", "true", capture=True)
    return {match[1]: match[2] for match in map(RESULT_LINE.match, listing.splitlines()) if match}


if __name__ == "__main__":
    main()
