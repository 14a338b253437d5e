"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, a temporary directory, a loopback port.

`PostgresCluster.start()` runs `initdb` and `pg_ctl` on a free 127.0.0.1 port with the data and
the socket inside one temporary directory, and `stop()` removes it all. As root, `initdb`
refuses to run, so then the directory goes to `nobody` and the binaries run through
`runuser -u nobody --`. The cluster trusts loopback connections and, unless started
`durable`, skips fsync: it holds nothing worth keeping.

The pytest fixtures: `postgres_cluster` (one per session) and `postgres_url` (a fresh, empty
database on it for each test): import both into the test module that uses them.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
_numbers = itertools.count(1)


class PostgresMissingError(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def postgres_bindir() -> Path:
    """Where `initdb`, `pg_ctl` and `postgres` are: `pg_config --bindir`, else /usr/lib/postgresql/*/bin."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(found.stdout.strip()))
    candidates += [Path(path) for path in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise PostgresMissingError(
        "The PostgreSQL server binaries (initdb, pg_ctl) are not installed: the Postgres journal tests "
        "need them. Install Debian's postgresql package (apt-get install postgresql), as CI does."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """One running cluster; `url(database)` names a database on it."""

    def __init__(self, directory: Path, port: int, bindir: Path) -> None:
        self.directory = directory
        self.port = port
        self._bindir = bindir

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresCluster:
        """A running cluster; `durable` keeps fsync and synchronous commits on (for benchmarks)."""
        bindir = postgres_bindir()
        directory = Path(tempfile.mkdtemp(prefix="kling-mcp-postgres-"))
        cluster = cls(directory, free_port(), bindir)
        try:
            if os.geteuid() == 0:
                shutil.chown(directory, UNPRIVILEGED_USER)
            cluster._run(
                "initdb", "-D", str(cluster.data_dir), "-U", SUPERUSER, "--auth=trust", "--no-sync",
                "-E", "UTF8", "--locale=C",
            )  # fmt: skip
            options = f"-p {cluster.port} -c listen_addresses=127.0.0.1 -k {directory}"
            if not durable:
                options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            log = str(directory / "server.log")
            cluster._run("pg_ctl", "-D", str(cluster.data_dir), "-l", log, "-o", options, "-w", "start")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return cluster

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    def url(self, database: str = SUPERUSER) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database's URL."""
        name = f"test_{os.getpid()}_{next(_numbers)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self._bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", UNPRIVILEGED_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database on the session's cluster."""
    return postgres_cluster.create_database()
