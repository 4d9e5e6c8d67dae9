"""A throwaway PostgreSQL cluster for tests and the benchmark.

Started from the distribution's server binaries (``initdb`` on PATH or under
``/usr/lib/postgresql/<version>/bin``), in a private folder, on a free loopback
port with a Unix socket in that folder: nothing else on the machine can reach
it and nothing of it outlives the session. initdb refuses to run as root, so as
root the cluster runs as the ``postgres`` user the package creates.

Authentication: the superuser ``segsync`` connects over 127.0.0.1 without a
password; the role ``locked`` must give its password (SCRAM), for the tests of
wrong and missing passwords.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

SUPERUSER = "segsync"
LOCKED_USER = "locked"
LOCKED_PASSWORD = "s3cret-Pa55"  # a test cluster's; never a real one
DATABASE = "crm"


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: PATH first, then Debian's layout."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def why_unavailable() -> str | None:
    """Why no cluster can be started here (None: it can)."""
    if find_bindir() is None:
        return (
            "PostgreSQL server binaries (initdb) not found: install the distribution's "
            "postgresql package (.ci/run does) to run the PostgreSQL source tests"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run initdb as"
    try:
        import adbc_driver_postgresql  # noqa: F401
    except ImportError:
        return "adbc-driver-postgresql is not installed (uv sync installs it for tests)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One running cluster; ``url(user, db)`` for libpq, ``sql(...)`` as superuser."""

    def __init__(self) -> None:
        bindir = find_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="segsync-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.port = free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            runuser = shutil.which("runuser")
            self._as = [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-c"]

    def _run(self, argv: Sequence[str]) -> None:
        cmd = list(argv)
        if self._as[:1] == ["su"]:
            cmd = [*self._as, " ".join(f"'{a}'" for a in argv)]
        elif self._as:
            cmd = [*self._as, *argv]
        subprocess.run(
            cmd, check=True, capture_output=True, text=True, timeout=120, cwd=self.folder
        )

    def start(self) -> Cluster:
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"]
        )  # fmt: skip
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            f"host all {LOCKED_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
             "-o", options, "-w", "-t", "60", "start"]
        )  # fmt: skip
        self.sql("postgres", f"CREATE DATABASE {DATABASE}")
        self.sql("postgres", f"CREATE ROLE {LOCKED_USER} LOGIN PASSWORD '{LOCKED_PASSWORD}'")
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(
                [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
            )
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, user: str = SUPERUSER, db: str = DATABASE) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def sql(self, db: str, *statements: str) -> list[tuple[Any, ...]]:
        """Run statements as the superuser on a fresh connection (closed after, so
        the server's statistics counters see the writes); the last one's rows."""
        import adbc_driver_postgresql.dbapi as pg

        rows: list[tuple[Any, ...]] = []
        with pg.connect(self.url(db=db), autocommit=True) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
                try:
                    rows = [tuple(r) for r in cur.fetchall()]
                except Exception:  # a statement without a result
                    rows = []
        return rows


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    cluster = Cluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def wait_for(predicate: Any, seconds: float = 10.0) -> bool:
    """Poll ``predicate`` until it is true (statistics reach the server within ~1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return bool(predicate())
