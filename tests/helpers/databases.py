"""Fresh databases for the store tests: a SQLite file, or a database on a throwaway PostgreSQL server.

The server is Debian's PostgreSQL (``make test`` installs the ``postgresql`` package
when no ``pg_ctl`` is found under /usr/lib/postgresql/*/bin), started by ``initdb`` and
``pg_ctl`` in a temporary folder on a free loopback port and removed when the test
session ends. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` system user the Debian package creates (``nobody`` when there is none),
through ``runuser``; the folder is handed to that user. The cluster uses an ICU
``en-US`` collation where the server supports it, as production servers do, so code
that depends on the byte order of SQLite's default collation shows up in the tests.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

POSTGRES_SWITCH = "KGQA_TEST_POSTGRES"  # "0" skips the PostgreSQL-parametrised tests; anything else runs them
SUPERUSER = "kgqa"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No throwaway PostgreSQL server could be started; the message says why."""


def postgres_wanted() -> bool:
    return os.environ.get(POSTGRES_SWITCH, "1").strip() != "0"


def find_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``pg_ctl`` (where Debian installs it)."""
    candidates = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")]

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))

    return max(candidates, key=version) if candidates else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_user() -> str | None:
    """Who runs the server: the current user, or when that is root, ``postgres`` (else ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresUnavailable("running as root and neither a postgres nor a nobody user exists to run the server")


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, reachable at 127.0.0.1:<port> as a trusted superuser."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.user = _server_user()
        self.root = Path(tempfile.mkdtemp(prefix="kgqa-postgres-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.running = False
        if self.user is not None:
            info = pwd.getpwnam(self.user)
            os.chown(self.root, info.pw_uid, info.pw_gid)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd=self.root)

    def start(self) -> "PostgresServer":
        base = ["initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
                "--locale=C.UTF-8", "--no-sync"]
        done = self._run(*base, "--locale-provider=icu", "--icu-locale=en-US")
        if done.returncode != 0:  # a server without ICU: the libc C.UTF-8 locale alone
            shutil.rmtree(self.data, ignore_errors=True)
            done = self._run(*base)
        if done.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {_last_line(done.stderr or done.stdout)}")
        for _attempt in range(3):  # a port picked free can be taken before the server binds it
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            done = self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
                             "-t", str(START_TIMEOUT_S), "-o", options)
            if done.returncode == 0:
                self.running = True
                atexit.register(self.stop)  # also when the session ends without running the fixture's teardown
                return self
        raise PostgresUnavailable(f"pg_ctl start failed: {_last_line(self._log_tail() or done.stderr)}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and delete its folder; an immediate shutdown, since nothing in it is kept."""
        if self.running:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30")
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _admin(self, statement: str) -> None:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(statement))
        finally:
            engine.dispose()

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"kgqa_{uuid.uuid4().hex[:12]}"
        self._admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_postgres() -> PostgresServer:
    """A running throwaway server, or ``PostgresUnavailable`` saying why there is none."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("no pg_ctl under /usr/lib/postgresql/*/bin: run `make postgresql` "
                                  "(apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        return server.start()
    except BaseException:
        server.stop()
        raise


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
