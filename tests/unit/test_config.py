"""Config parsing: every rule of server-behaviour.md §11, errors listed together, secrets hidden."""

from __future__ import annotations

import base64
import uuid

import pytest

from electric_trio.config import SETTINGS, Config, parse_size
from electric_trio.errors import ConfigError

HS256_KEY = "k" * 32
BASE = {
    "DATABASE_URL": "postgresql://electric:db-secret@db.example.com:5433/app",
    "LOGICAL_PUBLISHER_HOST": "electric.example.com",
    "PG_PROXY_PASSWORD": "proxy-secret",
    "AUTH_JWT_ALG": "HS256",
    "AUTH_JWT_KEY": HS256_KEY,
}
PEM = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"


def load(**env: str) -> Config:
    return Config.from_env({**BASE, **env})


def problems(env: dict[str, str], overrides: dict[str, str | None] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        Config.from_env(env, overrides)
    return str(info.value).splitlines()


def problem(**env: str) -> str:
    (line,) = problems({**BASE, **env})
    return line


def test_defaults() -> None:
    config = load()
    assert config.database.host == "db.example.com"
    assert config.database.port == 5433
    assert config.database.user == "electric"
    assert config.database.password == "db-secret"
    assert config.database.dbname == "app"
    assert config.database.sslmode == "prefer"
    assert config.database.connect_timeout == 5.0
    assert config.database_require_ssl is False
    assert config.database_use_ipv6 is False
    assert config.use_ipv6 is True
    assert config.http_port == 5133
    assert config.write_to_pg_mode == "logical_replication"
    assert config.logical_publisher_host == "electric.example.com"
    assert config.logical_publisher_port == 5433
    assert config.pg_proxy_port == 65432
    assert config.pg_proxy_http_tunnel is False
    assert config.pg_proxy_password == "proxy-secret"
    assert config.auth.mode == "secure"
    assert config.auth.alg == "HS256"
    assert config.auth.key == HS256_KEY.encode()
    assert config.resumable_wal_window == 2 * 2**30
    assert config.txn_cache_size == 256 * 2**20
    assert config.log_level == "info"
    assert config.telemetry is True
    uuid.UUID(config.instance_id)
    assert not config.features.enabled("proxy_ddlx_grant")
    assert config.metrics_measurement_period_ms == 2000
    assert config.statsd_host is None
    assert config.proxy_tracing_enable is False


def test_every_setting_has_a_flag() -> None:
    assert len({s.flag for s in SETTINGS}) == len(SETTINGS)
    assert all(s.flag.startswith("--") for s in SETTINGS)


# ---- DATABASE_URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h", ("h", 5432, "u", None, "u")),
        ("postgresql://u:p@h:1234/", ("h", 1234, "u", "p", "u")),
        ("postgresql://pg@[2001:db8::1234]:4321", ("2001:db8::1234", 4321, "pg", None, "pg")),
        (
            "postgresql://user%2Bx%40mail.com:weird%2Fp%40ss@localhost:5433/my%2Bdb",
            ("localhost", 5433, "user+x@mail.com", "weird/p@ss", "my+db"),
        ),
        ("postgresql://u:@h/db", ("h", 5432, "u", "", "db")),
    ],
)
def test_database_url(url: str, expected: tuple[object, ...]) -> None:
    db = load(DATABASE_URL=url).database
    assert (db.host, db.port, db.user, db.password, db.dbname) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "DATABASE_URL has invalid URL scheme: 'mysql'"),
        ("localhost:5432", "DATABASE_URL has invalid URL scheme"),
        ("postgresql://localhost", "DATABASE_URL has invalid or missing username"),
        ("postgresql://:pw@localhost", "DATABASE_URL has invalid or missing username"),
        ("postgresql://u:pw@", "DATABASE_URL is missing the host"),
        ("postgresql://u@h:99999/db", "DATABASE_URL has invalid port"),
        ("postgresql://u@h:abc/db", "DATABASE_URL has invalid port"),
        ("postgresql://u@h/a/b", "DATABASE_URL has invalid database name"),
        ("postgresql://u@h/db?sslmode=yesplease", 'DATABASE_URL has invalid "sslmode" value'),
        ("postgresql://u@h/db?sslmode=verify-full", 'unsupported "sslmode" value'),
        ("postgresql://u@h/db?replication=database", 'unsupported "replication" query option'),
        ("postgresql://u@h/db?opts=x&foo=bar", "unsupported query options: 'foo', 'opts'"),
        ("postgresql://u@h/db?sslmode=require&connect_timeout=3", "'connect_timeout'"),
    ],
)
def test_database_url_rejected(url: str, message: str) -> None:
    line = problem(DATABASE_URL=url)
    assert message in line
    assert "db-secret" not in line


def test_database_url_problem_never_shows_the_password() -> None:
    line = problem(DATABASE_URL="postgresql://u:hunter2@h/db?foo=1")
    assert "hunter2" not in line


def test_database_url_missing_or_blank() -> None:
    env = {k: v for k, v in BASE.items() if k != "DATABASE_URL"}
    assert problems(env) == ["DATABASE_URL not set"]
    assert problems({**env, "DATABASE_URL": "  "}) == ["DATABASE_URL not set"]


@pytest.mark.parametrize(
    ("sslmode", "require_ssl_env", "effective", "require_ssl"),
    [
        (None, None, "prefer", False),
        ("disable", None, "disable", False),
        ("allow", None, "allow", False),
        ("prefer", None, "prefer", False),
        ("require", None, "require", True),
        (None, "true", "require", True),
        ("disable", "true", "require", True),
        ("require", "false", "prefer", False),
        ("disable", "false", "disable", False),
    ],
)
def test_require_ssl(
    sslmode: str | None, require_ssl_env: str | None, effective: str, require_ssl: bool
) -> None:
    env = {"DATABASE_URL": "postgresql://u@h/db" + (f"?sslmode={sslmode}" if sslmode else "")}
    if require_ssl_env is not None:
        env["DATABASE_REQUIRE_SSL"] = require_ssl_env
    config = load(**env)
    assert config.database.sslmode == effective
    assert config.database_require_ssl is require_ssl
    assert config.database.url().endswith(f"?sslmode={effective}")


def test_url_round_trips_with_quoting() -> None:
    url = "postgresql://user%40x:p%3Aw%2F@[::1]:5/my%20db?sslmode=require"
    db = load(DATABASE_URL=url).database
    assert load(DATABASE_URL=db.url()).database == db


# ---- booleans, ports, sizes, choices -------------------------------------------------------


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "t", "y", "enabled"])
def test_booleans_true(value: str) -> None:
    config = load(DATABASE_USE_IPV6=value, PROXY_TRACING_ENABLE=value, ELECTRIC_USE_IPV6=value)
    assert config.database_use_ipv6
    assert config.proxy_tracing_enable
    assert config.use_ipv6


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off", "f", "n", "disabled"])
def test_booleans_false(value: str) -> None:
    config = load(ELECTRIC_USE_IPV6=value, ELECTRIC_TELEMETRY=value)
    assert config.use_ipv6 is False
    assert config.telemetry is False


@pytest.mark.parametrize(
    "name",
    ["DATABASE_REQUIRE_SSL", "DATABASE_USE_IPV6", "ELECTRIC_USE_IPV6", "PROXY_TRACING_ENABLE"],
)
def test_boolean_rejected(name: str) -> None:
    assert problem(**{name: "maybe"}) == f"{name} has invalid value: 'maybe'. Must be true or false"


@pytest.mark.parametrize("value", ["0/f", "sometimes", "2"])
def test_telemetry_rejected(value: str) -> None:
    assert problem(ELECTRIC_TELEMETRY=value).startswith("ELECTRIC_TELEMETRY has invalid value")


@pytest.mark.parametrize("name", ["HTTP_PORT", "LOGICAL_PUBLISHER_PORT"])
@pytest.mark.parametrize("value", ["-1", "65536", "http", "12.5", "1e3"])
def test_port_rejected(name: str, value: str) -> None:
    assert problem(**{name: value}).startswith(f"{name} has invalid value: {value!r}")


def test_ports() -> None:
    config = load(HTTP_PORT="0", LOGICAL_PUBLISHER_PORT="6000")
    assert (config.http_port, config.logical_publisher_port) == (0, 6000)


@pytest.mark.parametrize(
    ("value", "port", "tunnel"),
    [
        ("7000", 7000, False),
        ("http", 65432, True),
        ("HTTP", 65432, True),
        ("http:7001", 7001, True),
    ],
)
def test_pg_proxy_port(value: str, port: int, tunnel: bool) -> None:
    config = load(PG_PROXY_PORT=value)
    assert (config.pg_proxy_port, config.pg_proxy_http_tunnel) == (port, tunnel)


@pytest.mark.parametrize("value", ["https", "http:", "http:x", "70000", "tcp:5"])
def test_pg_proxy_port_rejected(value: str) -> None:
    assert problem(PG_PROXY_PORT=value).startswith("PG_PROXY_PORT has invalid value")


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("1000", 1000),
        ("5k", 5_000),
        ("5K", 5 * 1024),
        ("3m", 3_000_000),
        ("3M", 3 * 2**20),
        ("2g", 2_000_000_000),
        ("2G", 2 * 2**30),
    ],
)
def test_sizes(value: str, size: int) -> None:
    assert parse_size(value) == size
    config = load(ELECTRIC_RESUMABLE_WAL_WINDOW=value, ELECTRIC_TXN_CACHE_SIZE=value)
    assert config.resumable_wal_window == config.txn_cache_size == size


@pytest.mark.parametrize("value", ["2T", "1.5G", "G", "-1M", "0", "2 G", "2GB", "0x10"])
def test_sizes_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="Must be a positive size"):
        parse_size(value)
    assert problem(ELECTRIC_TXN_CACHE_SIZE=value).startswith("ELECTRIC_TXN_CACHE_SIZE has invalid")


@pytest.mark.parametrize(
    ("value", "level"),
    [
        ("error", "error"),
        ("warning", "warning"),
        ("warn", "warning"),
        ("info", "info"),
        ("debug", "debug"),
        ("DEBUG", "debug"),
        ("emergency", "emergency"),
        ("alert", "alert"),
        ("critical", "critical"),
        ("notice", "notice"),
    ],
)
def test_log_level(value: str, level: str) -> None:
    assert load(LOG_LEVEL=value).log_level == level


def test_log_level_rejected() -> None:
    assert problem(LOG_LEVEL="verbose") == (
        "LOG_LEVEL has invalid value: 'verbose'. Must be one of error, warning, info or debug"
    )


def test_metrics_period() -> None:
    assert load(METRICS_MEASUREMENT_PERIOD="500").metrics_measurement_period_ms == 500
    assert problem(METRICS_MEASUREMENT_PERIOD="0").startswith("METRICS_MEASUREMENT_PERIOD")
    assert problem(METRICS_MEASUREMENT_PERIOD="2s").startswith("METRICS_MEASUREMENT_PERIOD")


def test_plain_strings() -> None:
    config = load(ELECTRIC_INSTANCE_ID="node-1", STATSD_HOST="statsd.local")
    assert config.instance_id == "node-1"
    assert config.statsd_host == "statsd.local"


# ---- write mode, proxy password ------------------------------------------------------------


def test_direct_writes_needs_no_publisher_host() -> None:
    env = {k: v for k, v in BASE.items() if k != "LOGICAL_PUBLISHER_HOST"}
    config = Config.from_env({**env, "ELECTRIC_WRITE_TO_PG_MODE": "direct_writes"})
    assert config.write_to_pg_mode == "direct_writes"
    assert config.logical_publisher_host is None
    assert problems(env) == [
        "LOGICAL_PUBLISHER_HOST not set (required when "
        "ELECTRIC_WRITE_TO_PG_MODE=logical_replication)"
    ]


def test_write_mode_rejected() -> None:
    assert problem(ELECTRIC_WRITE_TO_PG_MODE="both") == (
        "ELECTRIC_WRITE_TO_PG_MODE has invalid value: 'both'. "
        "Must be one of logical_replication or direct_writes"
    )


def test_pg_proxy_password_required() -> None:
    env = {k: v for k, v in BASE.items() if k != "PG_PROXY_PASSWORD"}
    assert problems(env) == ["PG_PROXY_PASSWORD not set"]
    assert problems({**env, "PG_PROXY_PASSWORD": ""}) == ["PG_PROXY_PASSWORD not set"]


# ---- auth ----------------------------------------------------------------------------------


def insecure(**env: str) -> dict[str, str]:
    base = {k: v for k, v in BASE.items() if not k.startswith("AUTH_")}
    return {**base, "AUTH_MODE": "insecure", **env}


def test_insecure_mode() -> None:
    config = Config.from_env(insecure(AUTH_JWT_NAMESPACE="https://example.com/jwt"))
    assert config.auth.mode == "insecure"
    assert config.auth.namespace == "https://example.com/jwt"
    assert config.auth.key is None


def test_insecure_mode_refuses_other_jwt_settings() -> None:
    env = insecure(
        AUTH_JWT_ALG="HS256",
        AUTH_JWT_KEY=HS256_KEY,
        AUTH_JWT_KEY_IS_BASE64_ENCODED="true",
        AUTH_JWT_ISS="me",
        AUTH_JWT_AUD="you",
    )
    assert problems(env) == [
        f"{name} must not be set when AUTH_MODE=insecure"
        for name in (
            "AUTH_JWT_ALG",
            "AUTH_JWT_KEY",
            "AUTH_JWT_KEY_IS_BASE64_ENCODED",
            "AUTH_JWT_ISS",
            "AUTH_JWT_AUD",
        )
    ]


def test_auth_mode_rejected() -> None:
    assert problem(AUTH_MODE="open").startswith("AUTH_MODE has invalid value: 'open'")


def test_secure_mode_requires_alg_and_key() -> None:
    env = {k: v for k, v in BASE.items() if not k.startswith("AUTH_")}
    assert problems(env) == [
        "AUTH_JWT_ALG not set (required when AUTH_MODE=secure)",
        "AUTH_JWT_KEY not set (required when AUTH_MODE=secure)",
    ]


def test_alg_rejected() -> None:
    assert problem(AUTH_JWT_ALG="none").startswith("AUTH_JWT_ALG has invalid value: 'none'")


@pytest.mark.parametrize(("alg", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hs_key_length(alg: str, minimum: int) -> None:
    assert load(AUTH_JWT_ALG=alg, AUTH_JWT_KEY="x" * minimum).auth.key == b"x" * minimum
    line = problem(AUTH_JWT_ALG=alg, AUTH_JWT_KEY="x" * (minimum - 1))
    assert line == f"AUTH_JWT_KEY has to be at least {minimum} bytes long for {alg}"


def test_base64_key_is_decoded_and_length_checked_after() -> None:
    raw = bytes(range(32))
    encoded = base64.b64encode(raw).decode().rstrip("=")  # padding is optional
    config = load(AUTH_JWT_KEY=encoded, AUTH_JWT_KEY_IS_BASE64_ENCODED="true")
    assert config.auth.key == raw
    # 32 characters of base64 decode to 24 bytes: too short for HS256.
    line = problem(AUTH_JWT_KEY="a" * 32, AUTH_JWT_KEY_IS_BASE64_ENCODED="true")
    assert line == "AUTH_JWT_KEY has to be at least 32 bytes long for HS256"
    assert problem(AUTH_JWT_KEY="!" * 64, AUTH_JWT_KEY_IS_BASE64_ENCODED="true").startswith(
        "AUTH_JWT_KEY is not valid base64"
    )


@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512"])
def test_public_key_algs(alg: str) -> None:
    assert load(AUTH_JWT_ALG=alg, AUTH_JWT_KEY=PEM).auth.key == PEM.encode()
    assert problem(AUTH_JWT_ALG=alg, AUTH_JWT_KEY=HS256_KEY).startswith(
        f"AUTH_JWT_KEY is not a valid key for AUTH_JWT_ALG={alg}"
    )
    assert problem(
        AUTH_JWT_ALG=alg, AUTH_JWT_KEY=PEM, AUTH_JWT_KEY_IS_BASE64_ENCODED="true"
    ).startswith("AUTH_JWT_KEY_IS_BASE64_ENCODED only applies to HS")


def test_iss_aud_namespace() -> None:
    auth = load(AUTH_JWT_ISS="iss", AUTH_JWT_AUD="aud", AUTH_JWT_NAMESPACE="ns").auth
    assert (auth.iss, auth.aud, auth.namespace) == ("iss", "aud", "ns")


# ---- features ------------------------------------------------------------------------------


def test_features() -> None:
    features = load(
        ELECTRIC_FEATURES="proxy_ddlx_grant=true::proxy_ddlx_assign=false:proxy_ddlx_grant=false"
    ).features
    assert features.enabled("proxy_ddlx_grant")  # the leftmost setting wins
    assert not features.enabled("proxy_ddlx_assign")
    assert not features.enabled("proxy_ddlx_revoke")
    assert load(ELECTRIC_FEATURES="my_flag=true").features.enabled("my_flag")


@pytest.mark.parametrize("value", ["proxy_ddlx_grant", "proxy_ddlx_grant=yes", "=true", "a=TRUE"])
def test_features_rejected(value: str) -> None:
    assert problem(ELECTRIC_FEATURES=value).startswith("ELECTRIC_FEATURES has invalid entry")


# ---- sources and error listing -------------------------------------------------------------


def test_overrides_win_and_are_named_by_flag() -> None:
    config = Config.from_env(
        {**BASE, "HTTP_PORT": "1000"}, {"HTTP_PORT": "2000", "LOG_LEVEL": None}
    )
    assert config.http_port == 2000
    assert config.log_level == "info"
    assert problems({**BASE, "HTTP_PORT": "1000"}, {"HTTP_PORT": "x"}) == [
        "--http-port has invalid value: 'x'. Must be a port number from 0 to 65535"
    ]


def test_defaults_layer_is_below_the_environment() -> None:
    config = Config.from_env(
        {**BASE, "AUTH_MODE": "secure"},
        defaults={"AUTH_MODE": "insecure", "HTTP_PORT": "7777"},
    )
    assert config.auth.mode == "secure"
    assert config.http_port == 7777


def test_every_problem_is_listed_once_per_line_in_settings_order() -> None:
    lines = problems(
        {
            "DATABASE_URL": "mysql://x",
            "HTTP_PORT": "abc",
            "LOG_LEVEL": "loud",
            "AUTH_JWT_ALG": "HS256",
            "AUTH_JWT_KEY": "short",
            "ELECTRIC_TXN_CACHE_SIZE": "12X",
            "DATABASE_REQUIRE_SSL": "perhaps",
        }
    )
    assert [line.split()[0] for line in lines] == [
        "DATABASE_URL",
        "DATABASE_REQUIRE_SSL",
        "HTTP_PORT",
        "LOGICAL_PUBLISHER_HOST",
        "PG_PROXY_PASSWORD",
        "AUTH_JWT_KEY",
        "ELECTRIC_TXN_CACHE_SIZE",
        "LOG_LEVEL",
    ]


# ---- secrets -------------------------------------------------------------------------------


def test_secrets_are_redacted() -> None:
    config = load()
    for text in (repr(config), str(config), repr(config.database), repr(config.auth)):
        assert "db-secret" not in text
        assert "proxy-secret" not in text
        assert HS256_KEY not in text
    described = config.describe()
    assert described["pg_proxy_password"] == "******"
    assert described["database_password"] == "******"
    assert described["auth_jwt_key"] == "******"
    assert described["database"] == "electric@db.example.com:5433/app"
    assert not any(
        secret in value
        for value in described.values()
        for secret in ("db-secret", "proxy-secret", HS256_KEY)
    )
    assert "db-secret" in config.database.url()  # the one place it is meant to be


def test_config_is_frozen() -> None:
    config = load()
    with pytest.raises(AttributeError):
        config.http_port = 1  # type: ignore[misc]
