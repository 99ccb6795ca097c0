"""A throwaway PostgreSQL cluster for the PostgreSQL decision log's tests (standard library only,
so `.ci/run` can use it before the project is installed).

    python3 tests/pgcluster.py start        # prints `export CMS_POLICY_TEST_PG_DSN=...` lines for eval
    python3 tests/pgcluster.py stop BASE    # stops the cluster and removes BASE

The cluster lives in a new directory under the system temp directory, listens on 127.0.0.1 on a
free port and on a unix socket in that directory only, and needs a password (scram-sha-256, a
random one). PostgreSQL refuses to run as root: as root, it runs as the `postgres` user (which
Debian's package makes), via subprocess's `user=`, so neither sudo nor runuser is needed.
"""
from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

DSN_ENV = "CMS_POLICY_TEST_PG_DSN"
DATA_ENV = "CMS_POLICY_TEST_PG_DATA"  # the data directory, when known: lets the tests stop and start the server
BASE_ENV = "CMS_POLICY_TEST_PG_BASE"
USER = "cms_test"


class ClusterError(Exception):
    pass


def bindir() -> Path | None:
    """PostgreSQL's programs: where `initdb` on PATH really lives, else Debian's newest
    /usr/lib/postgresql/<major>/bin (not on PATH by default)."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                    key=lambda p: [int(n) for n in re.findall(r"\d+", p)])
    return Path(debian[-1]).parent if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    data: Path
    run_as: int | None  # uid to run PostgreSQL's programs as (None: as ourselves)
    bin: Path

    @property
    def base(self) -> Path:
        return self.data.parent

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        kwargs = {}
        if self.run_as is not None:
            user = pwd.getpwuid(self.run_as)
            kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": [],
                      "env": {**os.environ, "HOME": user.pw_dir, "USER": user.pw_name, "LOGNAME": user.pw_name}}
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], cwd=self.base, capture_output=True, text=True,
                                timeout=120, **kwargs)
        if check and result.returncode != 0:
            raise ClusterError(f"{args[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "postgres.log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop", check=False)

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def destroy(self) -> None:
        if self.running():
            self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    @classmethod
    def attach(cls, data: str | os.PathLike) -> Cluster | None:
        """A handle on a running cluster's data directory, if we may control it (as its owner, or as root)."""
        data = Path(data)
        found = bindir()
        if found is None or not (data / "PG_VERSION").exists():
            return None
        owner = data.stat().st_uid
        if owner == os.geteuid():
            return cls(data, None, found)
        return cls(data, owner, found) if os.geteuid() == 0 else None


def create() -> tuple[Cluster, str]:
    """A new cluster, started: (its handle, a DSN with the password)."""
    found = bindir()
    if found is None:
        raise ClusterError("PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin)")
    run_as = None
    if os.geteuid() == 0:
        try:
            run_as = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            raise ClusterError("running as root, and PostgreSQL refuses to: no 'postgres' user to run it as") from None
    base = Path(tempfile.mkdtemp(prefix="cms-policy-pg-"))
    try:
        if run_as is not None:
            os.chown(base, run_as, pwd.getpwuid(run_as).pw_gid)
        password = secrets.token_hex(16)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if run_as is not None:
            os.chown(pwfile, run_as, -1)
        cluster = Cluster(base / "data", run_as, found)
        cluster._run("initdb", "-D", str(cluster.data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}",
                     "-E", "UTF8", "--locale=C", "--no-sync")
        pwfile.unlink()
        for attempt in range(5):
            port = _free_port()
            with open(cluster.data / "postgresql.conf", "a") as conf:
                conf.write(f"\n# throwaway test cluster\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
                           f"unix_socket_directories = '{base}'\nmax_connections = 100\n")
            try:
                cluster.start()
                break
            except ClusterError:
                if attempt == 4:
                    log = base / "postgres.log"
                    raise ClusterError(f"PostgreSQL did not start:\n{log.read_text() if log.exists() else ''}") from None
        return cluster, f"postgresql://{USER}:{password}@127.0.0.1:{port}/postgres"
    except BaseException:
        subprocess.run([str(found / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop"],
                       capture_output=True, check=False, **({"user": run_as} if run_as is not None else {}))
        shutil.rmtree(base, ignore_errors=True)
        raise


def main(argv: list[str]) -> int:
    if argv[:1] == ["start"] and len(argv) == 1:
        try:
            cluster, dsn = create()
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        for name, value in ((DSN_ENV, dsn), (DATA_ENV, str(cluster.data)), (BASE_ENV, str(cluster.base))):
            print(f"export {name}={shlex.quote(value)}")
        return 0
    if argv[:1] == ["stop"] and len(argv) == 2:
        base = Path(argv[1])
        cluster = Cluster.attach(base / "data")
        if cluster is not None:
            cluster.destroy()
        elif base.name.startswith("cms-policy-pg-"):
            shutil.rmtree(base, ignore_errors=True)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
