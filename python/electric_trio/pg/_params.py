"""Connection parameters and the parsing of ``postgres://`` URLs."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

import msgspec

from ..errors import ConfigError

SslMode = Literal["disable", "allow", "prefer", "require"]
_SSL_MODES: tuple[SslMode, ...] = ("disable", "allow", "prefer", "require")


class ConnectParams(msgspec.Struct, frozen=True, kw_only=True):
    """Where and how to connect. ``host`` starting with ``/`` is a Unix socket directory."""

    host: str = "localhost"
    port: int = 5432
    user: str = "postgres"
    password: str | None = None
    database: str | None = None
    sslmode: SslMode = "prefer"
    application_name: str = "electric-trio"
    connect_timeout: float = 5.0
    #: Extra startup parameters (any GUC, e.g. ``{"TimeZone": "UTC"}``).
    options: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def dbname(self) -> str:
        return self.database or self.user

    @classmethod
    def from_url(cls, url: str, *, require_ssl: bool | None = None) -> ConnectParams:
        """Parses ``postgres[ql]://user[:password]@host[:port][/db][?sslmode=...]``.

        ``require_ssl`` (``DATABASE_REQUIRE_SSL``) overrides the URL's ``sslmode`` when given.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise ConfigError(f"malformed database URL: {e}") from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(
                f"malformed database URL: scheme must be postgres:// or postgresql://, "
                f"not {parts.scheme or '(none)'}://"
            )
        host = unquote(parts.hostname or "") or "localhost"
        user = unquote(parts.username or "") or "postgres"
        password = unquote(parts.password) if parts.password is not None else None
        database = unquote(parts.path.lstrip("/")) or None
        kwargs: dict[str, object] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "sslmode":
                if value not in _SSL_MODES:
                    raise ConfigError(
                        f"malformed database URL: sslmode must be one of "
                        f"{', '.join(_SSL_MODES)}, not {value!r}"
                    )
                kwargs["sslmode"] = value
            elif key == "host":
                host = value
            elif key == "application_name":
                kwargs["application_name"] = value
            elif key == "connect_timeout":
                try:
                    kwargs["connect_timeout"] = float(value)
                except ValueError:
                    raise ConfigError(
                        f"malformed database URL: connect_timeout {value!r} is not a number"
                    ) from None
            else:
                raise ConfigError(f"malformed database URL: unsupported option {key!r}")
        if require_ssl is not None:
            kwargs["sslmode"] = "require" if require_ssl else kwargs.get("sslmode", "prefer")
        return cls(
            host=host,
            port=port or 5432,
            user=user,
            password=password,
            database=database,
            **kwargs,  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        """``user@host:port/db``, with no password: safe for logs and errors."""
        return f"{self.user}@{self.host}:{self.port}/{self.dbname}"
