"""`gpu-reactor check` behind a real transaction-mode pgbouncer (skipped without one)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reactor.db.embedded import _run_as_user, free_port
from tests.ops.conftest import Cli
from tests.pg import with_database

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(PGBOUNCER is None, reason="pgbouncer not installed")


@pytest.fixture
def pooled_dsn(db_dsn: str) -> Iterator[str]:
    """The test database through pgbouncer in transaction mode, on a non-standard port
    (so only the pooler's behaviour, not a well-known port, can give it away)."""
    # Not pytest's tmp_path: pgbouncer runs as an unprivileged user when we are root.
    tmp_path = Path(tempfile.mkdtemp(prefix="gpu-reactor-pgbouncer-"))
    tmp_path.chmod(0o755)
    server = urlsplit(db_dsn)
    user = server.username or "postgres"
    port = free_port()
    login = f" user={user}" + (f" password={server.password}" if server.password else "")
    (tmp_path / "users.txt").write_text(f'"{user}" ""\n')
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(f"""[databases]
* = host={server.hostname} port={server.port}{login}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp_path / "users.txt"}
pool_mode = transaction
ignore_startup_parameters = extra_float_digits,application_name
""")
    runner = _run_as_user()  # pgbouncer refuses to run as root
    log = tmp_path / "pgbouncer.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(PGBOUNCER), str(ini)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            **(
                {"user": runner.pw_uid, "group": runner.pw_gid, "extra_groups": []}
                if runner is not None
                else {}
            ),
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pgbouncer did not start: {log.read_text()[-500:]}")
                time.sleep(0.05)
        yield with_database(f"postgresql://{user}@127.0.0.1:{port}/x", server.path.lstrip("/"))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_check_names_a_transaction_pooler(cli: Cli, pooled_dsn: str) -> None:
    result = cli("check", DATABASE_URL=pooled_dsn, REACTOR_PROVIDER="local")
    assert result.code == 1
    words = " ".join(result.out.split())
    assert "transaction-mode pooler" in words and "session-mode connection string" in words
    assert "FAIL listen" in words or "FAIL database" in words
    assert "Traceback" not in result.text
