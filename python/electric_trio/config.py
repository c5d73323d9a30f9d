"""The service's configuration: environment variables (server-behaviour.md §11) and CLI flags.

:meth:`Config.from_env` reads every setting, validates all of them and raises one
:class:`~electric_trio.errors.ConfigError` whose message lists every offending variable, one per
line. Values are looked up in order: explicit overrides (the command-line flags), the
environment, the caller's defaults (``electric-trio dev`` has its own), the built-in defaults.
An empty value counts as unset.

Secrets (the database password, ``PG_PROXY_PASSWORD``, ``AUTH_JWT_KEY``) never appear in
``repr()``, :meth:`Config.describe` or error messages.
"""

from __future__ import annotations

import base64
import binascii
import re
import typing
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, cast
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import msgspec

from .errors import ConfigError

__all__ = [
    "SETTINGS",
    "AuthConfig",
    "Config",
    "DatabaseConfig",
    "Features",
    "Setting",
    "parse_size",
]

SslMode = Literal["disable", "allow", "prefer", "require"]
WriteToPgMode = Literal["logical_replication", "direct_writes"]
AuthMode = Literal["secure", "insecure"]
LogLevel = Literal["emergency", "alert", "critical", "error", "warning", "notice", "info", "debug"]
JwtAlg = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]

_SSL_MODES: tuple[SslMode, ...] = ("disable", "allow", "prefer", "require")
_LOG_LEVELS: dict[str, LogLevel] = {
    "emergency": "emergency",
    "alert": "alert",
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "warn": "warning",
    "notice": "notice",
    "info": "info",
    "debug": "debug",
}
_PUBLIC_LOG_LEVELS = ("error", "warning", "info", "debug")
_JWT_ALGS: tuple[JwtAlg, ...] = typing.get_args(JwtAlg)
_HS_MIN_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_TRUE = ("1", "t", "true", "y", "yes", "on", "enable", "enabled")
_FALSE = ("0", "f", "false", "n", "no", "off", "disable", "disabled")
_SIZE_RE = re.compile(r"(\d+)([kKmMgG]?)")
_SIZE_UNITS = {"": 1, "k": 10**3, "K": 2**10, "m": 10**6, "M": 2**20, "g": 10**9, "G": 2**30}
_REDACTED = "******"
_PEM_PUBLIC_KEY_RE = re.compile(
    r"-----BEGIN (RSA |EC )?PUBLIC KEY-----.+-----END (RSA |EC )?PUBLIC KEY-----", re.DOTALL
)
_JWT_VARS_REFUSED_WHEN_INSECURE = (
    "AUTH_JWT_ALG",
    "AUTH_JWT_KEY",
    "AUTH_JWT_KEY_IS_BASE64_ENCODED",
    "AUTH_JWT_ISS",
    "AUTH_JWT_AUD",
)
KNOWN_FEATURES = (
    "proxy_ddlx_grant",
    "proxy_ddlx_revoke",
    "proxy_ddlx_assign",
    "proxy_ddlx_unassign",
)


@dataclass(frozen=True)
class Setting:
    """One environment variable and the command-line flag of the same meaning."""

    env: str
    flag: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "--database-url", "postgres[ql]://user[:pass]@host[:port][/db]", True),
    Setting("DATABASE_REQUIRE_SSL", "--database-require-ssl", "refuse Postgres without TLS"),
    Setting("DATABASE_USE_IPV6", "--database-use-ipv6", "prefer IPv6 to reach Postgres"),
    Setting("ELECTRIC_USE_IPV6", "--use-ipv6", "listen on IPv6 as well as IPv4 (default true)"),
    Setting("HTTP_PORT", "--http-port", "HTTP/WebSocket port (default 5133)"),
    Setting("ELECTRIC_WRITE_TO_PG_MODE", "--write-to-pg-mode", "logical_replication|direct_writes"),
    Setting("LOGICAL_PUBLISHER_HOST", "--logical-publisher-host", "host Postgres reaches us at"),
    Setting("LOGICAL_PUBLISHER_PORT", "--logical-publisher-port", "publisher port (default 5433)"),
    Setting("PG_PROXY_PORT", "--pg-proxy-port", "<port> | http | http:<port> (default 65432)"),
    Setting("PG_PROXY_PASSWORD", "--pg-proxy-password", "password of the migrations proxy", True),
    Setting("AUTH_MODE", "--auth-mode", "secure|insecure (default secure)"),
    Setting("AUTH_JWT_ALG", "--auth-jwt-alg", "HS256..HS512, RS256..RS512, ES256..ES512"),
    Setting("AUTH_JWT_KEY", "--auth-jwt-key", "JWT verification key", True),
    Setting("AUTH_JWT_KEY_IS_BASE64_ENCODED", "--auth-jwt-key-is-base64-encoded", "base64 HS key"),
    Setting("AUTH_JWT_NAMESPACE", "--auth-jwt-namespace", "claim holding sub/user_id"),
    Setting("AUTH_JWT_ISS", "--auth-jwt-iss", "required issuer claim"),
    Setting("AUTH_JWT_AUD", "--auth-jwt-aud", "required audience claim"),
    Setting("ELECTRIC_RESUMABLE_WAL_WINDOW", "--resumable-wal-window", "e.g. 2G (default)"),
    Setting("ELECTRIC_TXN_CACHE_SIZE", "--txn-cache-size", "e.g. 256M (default)"),
    Setting("LOG_LEVEL", "--log-level", "error|warning|info|debug (default info)"),
    Setting("ELECTRIC_TELEMETRY", "--telemetry", "enabled|disabled"),
    Setting("ELECTRIC_INSTANCE_ID", "--instance-id", "server id (default: random UUID)"),
    Setting("ELECTRIC_FEATURES", "--features", "flag=true:flag=false..."),
    Setting("METRICS_MEASUREMENT_PERIOD", "--metrics-measurement-period", "ms (default 2000)"),
    Setting("STATSD_HOST", "--statsd-host", "StatsD host"),
    Setting("PROXY_TRACING_ENABLE", "--proxy-tracing-enable", "trace the migrations proxy"),
)
_BY_ENV = {s.env: s for s in SETTINGS}


class DatabaseConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where Postgres is, from ``DATABASE_URL`` (and ``DATABASE_REQUIRE_SSL`` for ``sslmode``).

    ``sslmode`` is the effective mode: ``require`` when TLS is required, otherwise the URL's
    mode (``prefer`` when the URL has none), so TLS is tried first and plain TCP after.
    """

    host: str
    port: int = 5432
    user: str
    password: str | None = None
    dbname: str
    sslmode: SslMode = "prefer"
    connect_timeout: float = 5.0

    def __repr__(self) -> str:
        return f"DatabaseConfig({self.describe()!r}, sslmode={self.sslmode!r})"

    def describe(self) -> str:
        """``user@host:port/db`` with no password: safe for logs and error messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.user}@{host}:{self.port}/{self.dbname}"

    def url(self) -> str:
        """The connection URL, password included (a secret: do not log it)."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.dbname, safe='')}" + (
            f"?sslmode={self.sslmode}"
        )


class AuthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Satellite client authentication (``AUTH_*``). ``key`` is the raw HS secret (decoded from
    base64 when asked) or the PEM text of an RS/ES public key."""

    mode: AuthMode = "secure"
    alg: JwtAlg | None = None
    key: bytes | None = None
    namespace: str | None = None
    iss: str | None = None
    aud: str | None = None

    def __repr__(self) -> str:
        key = None if self.key is None else _REDACTED
        return (
            f"AuthConfig(mode={self.mode!r}, alg={self.alg!r}, key={key!r}, "
            f"namespace={self.namespace!r}, iss={self.iss!r}, aud={self.aud!r})"
        )


class Features(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Feature flags from ``ELECTRIC_FEATURES``; a flag not mentioned is off."""

    flags: tuple[tuple[str, bool], ...] = ()

    def enabled(self, name: str) -> bool:
        return dict(self.flags).get(name, False)


class Config(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every setting of the service, validated. Build it with :meth:`from_env`."""

    database: DatabaseConfig
    database_require_ssl: bool
    database_use_ipv6: bool = False
    use_ipv6: bool = True
    http_port: int = 5133
    write_to_pg_mode: WriteToPgMode = "logical_replication"
    logical_publisher_host: str | None = None
    logical_publisher_port: int = 5433
    pg_proxy_port: int = 65432
    #: ``PG_PROXY_PORT=http[:<port>]``: the proxy is also reachable through ``/proxy``.
    pg_proxy_http_tunnel: bool = False
    pg_proxy_password: str
    auth: AuthConfig
    resumable_wal_window: int = 2 * 2**30
    txn_cache_size: int = 256 * 2**20
    log_level: LogLevel = "info"
    telemetry: bool = True
    instance_id: str
    features: Features = Features()
    metrics_measurement_period_ms: int = 2000
    statsd_host: str | None = None
    proxy_tracing_enable: bool = False

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.describe().items())
        return f"Config({inner})"

    def describe(self) -> dict[str, str]:
        """Every setting as text, secrets replaced by ``******``: safe to log."""
        out: dict[str, str] = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name == "pg_proxy_password":
                out[name] = _REDACTED
            elif name == "database":
                out["database"] = value.describe()
                out["database_sslmode"] = value.sslmode
                out["database_password"] = _REDACTED if value.password is not None else "none"
            elif name == "auth":
                out["auth_mode"] = value.mode
                for field in ("alg", "namespace", "iss", "aud"):
                    if getattr(value, field) is not None:
                        out[f"auth_jwt_{field}"] = str(getattr(value, field))
                if value.key is not None:
                    out["auth_jwt_key"] = _REDACTED
            elif name == "features":
                out[name] = ":".join(f"{k}={str(v).lower()}" for k, v in value.flags)
            elif value is not None:
                out[name] = str(value).lower() if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str],
        overrides: Mapping[str, str | None] | None = None,
        *,
        defaults: Mapping[str, str] | None = None,
    ) -> Config:
        """Reads and validates every setting of server-behaviour.md §11.

        ``overrides`` maps variable names to values given on the command line (``None`` means
        not given); ``defaults`` replaces built-in defaults (``electric-trio dev`` uses it).
        Raises :class:`ConfigError` listing every problem, one per line.
        """
        r = _Reader(environ, overrides or {}, defaults or {})

        write_mode = r.choice(
            "ELECTRIC_WRITE_TO_PG_MODE", typing.get_args(WriteToPgMode), "logical_replication"
        )
        publisher_host = r.get("LOGICAL_PUBLISHER_HOST")
        if publisher_host is None and write_mode == "logical_replication":
            r.problem(
                "LOGICAL_PUBLISHER_HOST",
                "not set (required when ELECTRIC_WRITE_TO_PG_MODE=logical_replication)",
            )
        proxy_port, tunnel = r.proxy_port()
        proxy_password = r.get("PG_PROXY_PASSWORD")
        if proxy_password is None:
            r.problem("PG_PROXY_PASSWORD", "not set")
        features = r.parse("ELECTRIC_FEATURES", _parse_features, Features())
        instance_id = r.get("ELECTRIC_INSTANCE_ID") or str(uuid.uuid4())

        database = r.database()  # also settles r.require_ssl
        # Built with defaults in place of invalid values; only returned when there were none.
        config = cls(
            database=database,
            database_require_ssl=r.require_ssl,
            database_use_ipv6=r.boolean("DATABASE_USE_IPV6", False),
            use_ipv6=r.boolean("ELECTRIC_USE_IPV6", True),
            http_port=r.port("HTTP_PORT", 5133, allow_zero=True),
            write_to_pg_mode=cast(WriteToPgMode, write_mode),
            logical_publisher_host=publisher_host,
            logical_publisher_port=r.port("LOGICAL_PUBLISHER_PORT", 5433, allow_zero=True),
            pg_proxy_port=proxy_port,
            pg_proxy_http_tunnel=tunnel,
            pg_proxy_password=proxy_password or "",
            auth=r.auth(),
            resumable_wal_window=r.parse("ELECTRIC_RESUMABLE_WAL_WINDOW", parse_size, 2 * 2**30),
            txn_cache_size=r.parse("ELECTRIC_TXN_CACHE_SIZE", parse_size, 256 * 2**20),
            log_level=r.parse("LOG_LEVEL", _parse_log_level, "info"),
            telemetry=r.parse("ELECTRIC_TELEMETRY", _parse_bool, True),
            instance_id=instance_id,
            features=features,
            metrics_measurement_period_ms=r.parse(
                "METRICS_MEASUREMENT_PERIOD", _parse_positive_int, 2000
            ),
            statsd_host=r.get("STATSD_HOST"),
            proxy_tracing_enable=r.boolean("PROXY_TRACING_ENABLE", False),
        )
        if r.problems:
            raise ConfigError("\n".join(r.problems))
        return config


# ---- parsing ------------------------------------------------------------------------------

T = TypeVar("T")


class _Invalid(ValueError):
    """A value that does not parse; the message completes "<VAR> ..."."""


class _Reader:
    def __init__(
        self,
        environ: Mapping[str, str],
        overrides: Mapping[str, str | None],
        defaults: Mapping[str, str],
    ) -> None:
        self._environ = environ
        self._overrides = overrides
        self._defaults = defaults
        self._problems: list[tuple[str, str]] = []
        self.require_ssl = False

    def _lookup(self, name: str) -> tuple[str | None, str]:
        """The value and the name to report it under (the flag when it came from one)."""
        value = self._overrides.get(name)
        if value is not None and value.strip():
            return value, _BY_ENV[name].flag if name in _BY_ENV else name
        value = self._environ.get(name)
        if value is not None and value.strip():
            return value, name
        value = self._defaults.get(name)
        if value is not None and value.strip():
            return value, name
        return None, name

    def get(self, name: str) -> str | None:
        return self._lookup(name)[0]

    def problem(self, name: str, text: str) -> None:
        self._problems.append((name, f"{self._lookup(name)[1]} {text}"))

    @property
    def problems(self) -> list[str]:
        """Every problem, in the order of :data:`SETTINGS`."""
        order = {s.env: i for i, s in enumerate(SETTINGS)}
        return [text for name, text in sorted(self._problems, key=lambda p: order[p[0]])]

    def parse(self, name: str, parser: Callable[[str], T], default: T) -> T:
        value = self.get(name)
        if value is None:
            return default
        try:
            return parser(value)
        except _Invalid as e:
            self.problem(name, str(e))
            return default

    def boolean(self, name: str, default: bool) -> bool:
        return self.parse(name, _parse_bool, default)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        def parser(value: str) -> str:
            if value not in choices:
                raise _Invalid(f"has invalid value: {value!r}. Must be one of {_or(choices)}")
            return value

        return self.parse(name, parser, default)

    def port(self, name: str, default: int, *, allow_zero: bool = False) -> int:
        return self.parse(name, lambda v: _parse_port(v, allow_zero=allow_zero), default)

    def proxy_port(self) -> tuple[int, bool]:
        def parser(value: str) -> tuple[int, bool]:
            lowered = value.strip().lower()
            if lowered == "http":
                return 65432, True
            if lowered.startswith("http:"):
                return _parse_port(lowered[5:], allow_zero=True), True
            try:
                return _parse_port(value, allow_zero=True), False
            except _Invalid:
                raise _Invalid(
                    f"has invalid value: {value!r}. Must be a port number, 'http' or 'http:<port>'"
                ) from None

        return self.parse("PG_PROXY_PORT", parser, (65432, False))

    def database(self) -> DatabaseConfig:
        url = self.get("DATABASE_URL")
        placeholder = DatabaseConfig(host="localhost", user="postgres", dbname="postgres")
        explicit_ssl = self.parse("DATABASE_REQUIRE_SSL", _parse_bool, None)
        if url is None:
            self.problem("DATABASE_URL", "not set")
            return placeholder
        try:
            db = _parse_database_url(url)
        except _Invalid as e:
            self.problem("DATABASE_URL", str(e))
            return placeholder
        # Project decision: when DATABASE_REQUIRE_SSL is unset it follows the URL's sslmode.
        if explicit_ssl is None:
            self.require_ssl = db.sslmode == "require"
        else:
            self.require_ssl = explicit_ssl
            if explicit_ssl:
                db = msgspec.structs.replace(db, sslmode="require")
            elif db.sslmode == "require":
                db = msgspec.structs.replace(db, sslmode="prefer")
        return db

    def auth(self) -> AuthConfig:
        mode = self.choice("AUTH_MODE", typing.get_args(AuthMode), "secure")
        namespace = self.get("AUTH_JWT_NAMESPACE")
        if mode == "insecure":
            for name in _JWT_VARS_REFUSED_WHEN_INSECURE:
                if self.get(name) is not None:
                    self.problem(name, "must not be set when AUTH_MODE=insecure")
            return AuthConfig(mode="insecure", namespace=namespace)

        alg: JwtAlg | None = None
        raw_alg = self.get("AUTH_JWT_ALG")
        if raw_alg is None:
            self.problem("AUTH_JWT_ALG", "not set (required when AUTH_MODE=secure)")
        elif raw_alg not in _JWT_ALGS:
            self.problem(
                "AUTH_JWT_ALG", f"has invalid value: {raw_alg!r}. Must be one of {_or(_JWT_ALGS)}"
            )
        else:
            alg = raw_alg
        is_base64 = self.boolean("AUTH_JWT_KEY_IS_BASE64_ENCODED", False)
        key: bytes | None = None
        raw_key = self.get("AUTH_JWT_KEY")
        if raw_key is None:
            self.problem("AUTH_JWT_KEY", "not set (required when AUTH_MODE=secure)")
        elif alg is not None:
            try:
                key = _parse_jwt_key(raw_key, alg, is_base64=is_base64)
            except _Invalid as e:
                self.problem("AUTH_JWT_KEY", str(e))
        if is_base64 and alg is not None and not alg.startswith("HS"):
            self.problem(
                "AUTH_JWT_KEY_IS_BASE64_ENCODED", "only applies to HS256, HS384 and HS512 keys"
            )
        return AuthConfig(
            mode="secure",
            alg=alg,
            key=key,
            namespace=namespace,
            iss=self.get("AUTH_JWT_ISS"),
            aud=self.get("AUTH_JWT_AUD"),
        )


def _or(choices: tuple[str, ...]) -> str:
    return ", ".join(choices[:-1]) + " or " + choices[-1]


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise _Invalid(f"has invalid value: {value!r}. Must be true or false")


def _parse_int(value: str) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise _Invalid(f"has invalid value: {value!r}. Must be a whole number")
    return int(text)


def _parse_positive_int(value: str) -> int:
    number = _parse_int(value)
    if number <= 0:
        raise _Invalid(f"has invalid value: {value!r}. Must be greater than 0")
    return number


def _parse_port(value: str, *, allow_zero: bool) -> int:
    lowest = 0 if allow_zero else 1
    try:
        port = _parse_int(value)
    except _Invalid:
        port = -1
    if not lowest <= port <= 65535:
        raise _Invalid(
            f"has invalid value: {value!r}. Must be a port number from {lowest} to 65535"
        )
    return port


def parse_size(value: str) -> int:
    """Parses a byte size: a whole number with an optional suffix k=10³, K=2¹⁰, m=10⁶, M=2²⁰,
    g=10⁹, G=2³⁰. Raises :class:`ValueError` when malformed or zero."""
    match = _SIZE_RE.fullmatch(value.strip())
    if match is None or int(match.group(1)) == 0:
        raise _Invalid(
            f"has invalid value: {value!r}. Must be a positive size in bytes, optionally with "
            "a suffix k, K, m, M, g or G (for example 256M)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def _parse_log_level(value: str) -> LogLevel:
    level = _LOG_LEVELS.get(value.strip().lower())
    if level is None:
        raise _Invalid(f"has invalid value: {value!r}. Must be one of {_or(_PUBLIC_LOG_LEVELS)}")
    return level


def _parse_features(value: str) -> Features:
    flags: dict[str, bool] = {}
    for part in value.split(":"):
        if not part:
            continue
        name, sep, setting = part.partition("=")
        if not sep or not name or setting not in ("true", "false"):
            raise _Invalid(
                f"has invalid entry: {part!r}. Must be colon-separated flag=true or flag=false"
            )
        flags.setdefault(name, setting == "true")  # the leftmost setting wins
    return Features(flags=tuple(sorted(flags.items())))


def _parse_jwt_key(raw: str, alg: JwtAlg, *, is_base64: bool) -> bytes:
    if alg.startswith("HS"):
        if is_base64:
            text = raw.strip()
            try:
                key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise _Invalid(
                    "is not valid base64 (AUTH_JWT_KEY_IS_BASE64_ENCODED is set)"
                ) from None
        else:
            key = raw.encode()
        minimum = _HS_MIN_KEY_BYTES[alg]
        if len(key) < minimum:
            raise _Invalid(f"has to be at least {minimum} bytes long for {alg}")
        return key
    # RS* and ES*: a PEM public key. Whether it fits the algorithm is checked when the
    # verifier is built; here we reject what cannot be a PEM public key at all.
    if not _PEM_PUBLIC_KEY_RE.search(raw):
        raise _Invalid(
            f"is not a valid key for AUTH_JWT_ALG={alg}: RS* and ES* keys must be PEM public "
            "keys, header and footer included (-----BEGIN PUBLIC KEY----- ...)"
        )
    return raw.encode()


def _parse_database_url(url: str) -> DatabaseConfig:
    """Parses ``postgres[ql]://user[:pass]@host[:port][/db][?sslmode=<mode>]`` (§11)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise _Invalid("is not a valid URL") from None
    if parts.scheme not in ("postgres", "postgresql"):
        scheme = parts.scheme or "(none)"
        raise _Invalid(f"has invalid URL scheme: {scheme!r}. Must be postgresql:// or postgres://")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host = parts.hostname
    if not hostport or host is None or not host.strip():
        raise _Invalid("is missing the host")
    if not at or not userinfo:
        raise _Invalid("has invalid or missing username")
    user, colon, password = userinfo.partition(":")
    user = unquote(user)
    if not user.strip():
        raise _Invalid("has invalid or missing username")
    try:
        port = parts.port
    except ValueError:
        raise _Invalid("has invalid port. Must be a number from 1 to 65535") from None
    if port == 0:
        raise _Invalid("has invalid port. Must be a number from 1 to 65535")
    path = unquote(parts.path)
    if path.count("/") > 1:
        raise _Invalid("has invalid database name: must not contain '/'")
    dbname = path.lstrip("/") or user
    sslmode: SslMode = "prefer"
    options = parse_qsl(parts.query, keep_blank_values=True)
    unsupported = sorted({key for key, _ in options if key != "sslmode"})
    if "replication" in unsupported:
        raise _Invalid(
            'has unsupported "replication" query option. Electric opens both a replication '
            "connection and regular connections to Postgres as needed"
        )
    if unsupported:
        raise _Invalid(
            "has unsupported query options: "
            + ", ".join(repr(k) for k in unsupported)
            + ". Only sslmode is accepted"
        )
    for _, value in options:
        if value in ("verify-ca", "verify-full"):
            raise _Invalid(
                f'has unsupported "sslmode" value {value!r}. '
                "Consider using the DATABASE_REQUIRE_SSL configuration option"
            )
        if value not in _SSL_MODES:
            raise _Invalid(
                f'has invalid "sslmode" value: {value!r}. Must be one of {_or(_SSL_MODES)}'
            )
        sslmode = value
    return DatabaseConfig(
        host=host,
        port=port or 5432,
        user=user,
        password=unquote(password) if colon else None,
        dbname=dbname,
        sslmode=sslmode,
    )
