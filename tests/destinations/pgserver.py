"""A throwaway PostgreSQL server on 127.0.0.1 for the destination tests.

Debian's server programs (``/usr/lib/postgresql/<major>/bin``, or ``initdb``/``pg_ctl`` on PATH)
run a fresh cluster in a temporary directory, on a free loopback port, with its unix socket in
that directory too, so nothing else on the machine is touched. ``initdb`` refuses to run as
root: as root the cluster belongs to an unprivileged system user (``postgres`` where Debian's
package made it, otherwise ``cdp_pg``, created here) and every server program runs through
``runuser``. TCP logins need a password (SCRAM); the loader role owns the test database.

Every wait is bounded (``pg_ctl -w -t``, subprocess timeouts), and ``stop()`` stops the server
and removes the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

ENSURE_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ensure-postgres.sh"
FALLBACK_USER = "cdp_pg"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30


class PostgresUnavailable(RuntimeError):
    """No server could be started; the message is one line saying why."""


def find_bindir() -> Path | None:
    """The newest Debian server's bin folder, else the folder of ``initdb`` on PATH."""

    def major(path: str) -> int:
        try:
            return int(Path(path).parent.name.split(".")[0])
        except ValueError:
            return -1

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=major, reverse=True):
        if all(os.access(Path(d) / p, os.X_OK) for p in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(initdb).resolve().parent
    return None


def ensure_bindir() -> Path:
    """Find the server programs, running ``scripts/ensure-postgres.sh`` (which installs Debian's
    package when run as root) if they are missing."""
    found = find_bindir()
    if found:
        return found
    try:
        done = subprocess.run(["sh", str(ENSURE_SCRIPT)], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise PostgresUnavailable("scripts/ensure-postgres.sh did not finish within 30 minutes") from None
    found = find_bindir()
    if found:
        return found
    why = (done.stderr.strip().splitlines() or ["initdb/pg_ctl still missing"])[-1]
    raise PostgresUnavailable(f"PostgreSQL is needed for tests/destinations and is not installed: {why}")


def _server_user() -> str | None:
    """None when not root (the programs run as the current user); else an unprivileged user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             FALLBACK_USER],
            capture_output=True, timeout=60, check=False,
        )
        try:
            pwd.getpwnam(FALLBACK_USER)
            return FALLBACK_USER
        except KeyError:
            pass
    return "nobody"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    user: str | None
    superuser_password: str
    database: str = "cdp"
    loader: str = "loader"
    loader_password: str = ""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        """The connection string dlt takes as ``credentials`` (the loader role, its database)."""
        return f"postgresql://{self.loader}:{self.loader_password}@127.0.0.1:{self.port}/{self.database}"

    def superuser_dsn(self, database: str = "postgres") -> str:
        return (f"host=127.0.0.1 port={self.port} dbname={database} user=postgres "
                f"password={self.superuser_password} connect_timeout=10")

    def loader_dsn(self) -> str:
        return (f"host=127.0.0.1 port={self.port} dbname={self.database} user={self.loader} "
                f"password={self.loader_password} connect_timeout=10")

    def _as_server_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.user, "--", *argv] if self.user else argv

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, timeout=timeout,
                              cwd=self.root, check=False)
        if done.returncode != 0:
            text = (done.stderr or done.stdout).strip().splitlines()
            raise PostgresUnavailable(f"{Path(argv[0]).name} failed: {text[-1] if text else done.returncode}")
        return done

    def start(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if self.user:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)
            os.chown(pwfile, info.pw_uid, info.pw_gid)
        try:
            self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                       f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=peer",
                       "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=40 "
                   "-c shared_buffers=64MB -c timezone=UTC")
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
                   "-o", options, "-w", "-t", str(START_TIMEOUT_S), "start"], timeout=START_TIMEOUT_S + 30)

    def create_database(self) -> None:
        import psycopg2

        self.loader_password = secrets.token_urlsafe(18)
        con = psycopg2.connect(self.superuser_dsn())
        try:
            con.autocommit = True
            with con.cursor() as cur:
                cur.execute(f"create role {self.loader} login password %s", [self.loader_password])
                cur.execute(f"create database {self.database} owner {self.loader}")
        finally:
            con.close()

    def stop(self) -> None:
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                           "-t", str(STOP_TIMEOUT_S), "stop"], timeout=STOP_TIMEOUT_S + 30)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_server(attempts: int = 3) -> PostgresServer:
    """A running server with an empty database owned by the loader role. A port taken between
    choosing it and binding it is retried on another (at most ``attempts`` times)."""
    bindir = ensure_bindir()
    user = _server_user()
    last: Exception | None = None
    for _ in range(attempts):
        # /tmp itself, not pytest's per-user 0700 folder, which the server user cannot enter
        root = Path(tempfile.mkdtemp(prefix="cdp-pg-"))
        server = PostgresServer(bindir=bindir, root=root, port=_free_port(), user=user,
                                superuser_password=secrets.token_urlsafe(18))
        try:
            server.start()
            server.create_database()
            return server
        except (PostgresUnavailable, subprocess.TimeoutExpired) as exc:
            last = exc
            server.stop()
        except BaseException:
            server.stop()
            raise
    raise PostgresUnavailable(f"could not start a PostgreSQL server on 127.0.0.1: {last}")
