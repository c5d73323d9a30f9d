"""Satellite client authentication: the JWT of ``SatAuthReq.token`` (satellite-protocol.md §6.1).

:class:`Authenticator` is built once from :class:`~electric_trio.config.AuthConfig` (the key is
parsed and checked against the algorithm there, so a bad key aborts startup with a
:class:`~electric_trio.errors.ConfigError`); :meth:`Authenticator.authenticate` is pure (no I/O,
the clock can be passed in) and returns an :class:`AuthResult` or an :class:`AuthFailure`.

The rules are the legacy server's (``Electric.Satellite.Auth.{Secure,Insecure}`` on Joken):

- **secure** (default): three segments; header ``alg`` must equal ``AUTH_JWT_ALG`` (so ``none``
  and any other algorithm, of any family, are refused before the key is touched); the signature
  is verified by PyJWT with the configured algorithm and key only; claims ``iat`` and ``exp``
  are required, plus ``iss``/``aud`` when configured (exact string match); ``iat``/``nbf``
  must be at most now + 2 s and ``exp`` at least now - 2 s.
- **insecure**: signature and ``alg`` ignored, two-segment tokens accepted (a trailing ``.`` is
  assumed); ``iat``/``nbf``/``exp`` checked the same way when present, none required.
- both: the user id is ``sub``, else the legacy ``user_id``, read from the claim object named by
  ``AUTH_JWT_NAMESPACE`` when it is set; it must be a non-blank string.

Failures map to the Satellite error of the ``authenticate`` RPC (§7.1): ``AUTH_REQUIRED`` for a
first authentication, ``INVALID_REQUEST`` for an empty token or a failed renewal
(:meth:`Authenticator.renew`). The ``SatErrorResp`` carries the error type only, as the original's
did; :attr:`AuthFailure.reason` is for the server log and never holds the token or the key.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import time
import warnings
from typing import Any, Final, Literal, TypeAlias

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    SECP384R1,
    SECP521R1,
    EllipticCurve,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from ..config import AuthConfig, JwtAlg
from ..errors import ConfigError

__all__ = [
    "AUTH_REQUIRED",
    "INVALID_REQUEST",
    "JWT_EXPIRED_CLOSE_CODE",
    "JWT_EXPIRED_CLOSE_REASON",
    "MAX_CLOCK_DRIFT_SECONDS",
    "AuthFailure",
    "AuthResult",
    "Authenticator",
    "authenticate",
    "key_problem",
]

#: ``SatErrorResp.ErrorCode`` values used by the ``authenticate`` RPC (satellite-protocol.md §5).
AUTH_REQUIRED: Final = 1
INVALID_REQUEST: Final = 4
#: Allowed skew between our clock and the token issuer's, in seconds (not configurable, §11).
MAX_CLOCK_DRIFT_SECONDS: Final = 2
#: WebSocket close for a connection whose token expired (§1; the legacy server never sent it).
JWT_EXPIRED_CLOSE_CODE: Final = 4000
JWT_EXPIRED_CLOSE_REASON: Final = "JWT-expired"

AuthErrorType: TypeAlias = Literal["AUTH_REQUIRED", "INVALID_REQUEST"]
_ERROR_CODES: Final[dict[str, int]] = {
    "AUTH_REQUIRED": AUTH_REQUIRED,
    "INVALID_REQUEST": INVALID_REQUEST,
}

# The original's reasons (Electric.Satellite.Auth.JWTUtil.translate_error_reason/1).
_INVALID_TOKEN = "Invalid token"
_ALG_MISMATCH = "Signing algorithm mismatch"
_BAD_SIGNATURE = "Invalid token signature"
_BAD_USER_ID = "Missing or invalid 'user_id'"
_EXPIRED = "Expired token"
_NOT_YET_VALID = "Token is not yet valid"
_EMPTY_TOKEN = "Empty token"
_USER_CHANGED = "can't change user ID on renewal"

_HS_MIN_KEY_BYTES: Final[dict[str, int]] = {"HS256": 32, "HS384": 48, "HS512": 64}
_EC_CURVES: Final[dict[str, type[EllipticCurve]]] = {
    "ES256": SECP256R1,
    "ES384": SECP384R1,
    "ES512": SECP521R1,
}
_CURVE_NAMES: Final[dict[str, str]] = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PEM_BLOCK_RE = re.compile(
    rb"-----BEGIN (?P<kind>(?:RSA |EC )?PUBLIC KEY)-----.+?-----END (?P=kind)-----", re.DOTALL
)
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*")
_B64_ANY_RE = re.compile(r"[A-Za-z0-9_+/-]*")
_PEM_HINT = (
    "The key for RS* and ES* algorithms must be a public key in PEM format, header and footer "
    "included (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)"
)
_MAX_SHOWN_VALUE = 64
_RSA_RECOMMENDED_BITS = 2048


class AuthResult(msgspec.Struct, frozen=True, kw_only=True):
    """A valid token: whose it is and until when it is valid."""

    user_id: str
    #: The ``exp`` claim (Unix seconds), ``None`` when absent (insecure mode only).
    expires_at: float | None = None

    def is_expired(self, now: float | None = None) -> bool:
        """Whether the token has expired by ``now``, with the same 2 s drift as validation."""
        if self.expires_at is None:
            return False
        return _expired(self.expires_at, _whole_seconds(now))


class AuthFailure(msgspec.Struct, frozen=True, kw_only=True):
    """A refused token: the RPC answers ``SatErrorResp{error_type}`` (no message, as the
    original) and closes the connection; ``reason`` is for the server log only."""

    error_type: AuthErrorType
    #: Human-readable, safe to log: never contains the token or the key.
    reason: str

    @property
    def error_code(self) -> int:
        """The numeric ``SatErrorResp.ErrorCode``."""
        return _ERROR_CODES[self.error_type]


class _Refused(Exception):
    """Internal: a validation step failed with the given reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def key_problem(alg: JwtAlg, key: bytes) -> str | None:
    """Checks an ``AUTH_JWT_KEY`` (raw HS bytes, already base64-decoded when asked, or PEM text)
    against ``AUTH_JWT_ALG``. Returns ``None`` when usable, else text completing
    ``"AUTH_JWT_KEY ..."`` that never quotes the key."""
    try:
        _prepare_key(alg, key)
    except _Refused as e:
        return e.reason
    return None


def _prepare_key(alg: JwtAlg, key: bytes) -> Any:
    """The key object PyJWT verifies ``alg`` signatures with; raises :class:`_Refused`."""
    algorithm = jwt.get_algorithm_by_name(alg)
    if alg.startswith("HS"):
        minimum = _HS_MIN_KEY_BYTES[alg]
        if len(key) < minimum:
            raise _Refused(f"has to be at least {minimum} bytes long for {alg}")
        try:
            return algorithm.prepare_key(key)
        except jwt.InvalidKeyError:
            # PyJWT refuses PEM/SSH/DER key material as an HMAC secret (algorithm confusion).
            raise _Refused(
                f"is not a valid key for AUTH_JWT_ALG={alg}: it looks like a public or private "
                "key, not an HMAC secret"
            ) from None

    match = _PEM_BLOCK_RE.search(key)
    if match is None:
        raise _Refused(
            f"is not a valid key for AUTH_JWT_ALG={alg} or it has invalid format. " + _PEM_HINT
        )
    try:
        public_key = load_pem_public_key(match.group(0))
    except (ValueError, TypeError):
        raise _Refused(
            f"is not a valid key for AUTH_JWT_ALG={alg} or it has invalid format. " + _PEM_HINT
        ) from None
    if alg.startswith("RS"):
        if not isinstance(public_key, RSAPublicKey):
            raise _Refused(
                f"is not a valid key for AUTH_JWT_ALG={alg}: {alg} needs an RSA public key, "
                f"this is {_key_kind(public_key)}"
            )
    else:
        curve = _EC_CURVES[alg]
        if not isinstance(public_key, EllipticCurvePublicKey) or not isinstance(
            public_key.curve, curve
        ):
            raise _Refused(
                f"is not a valid key for AUTH_JWT_ALG={alg}: {alg} needs an EC public key on "
                f"curve {_CURVE_NAMES[alg]}, this is {_key_kind(public_key)}"
            )
    try:
        return algorithm.prepare_key(public_key)
    except jwt.InvalidKeyError as e:  # pragma: no cover - the checks above cover PyJWT's
        raise _Refused(f"is not a valid key for AUTH_JWT_ALG={alg}: {e}") from None


def _key_kind(key: object) -> str:
    if isinstance(key, RSAPublicKey):
        return f"an RSA key ({key.key_size} bits)"
    if isinstance(key, EllipticCurvePublicKey):
        return f"an EC key on curve {key.curve.name}"
    return f"a key of type {type(key).__name__.removeprefix('_')}"


class Authenticator:
    """Validates Satellite auth tokens for one :class:`AuthConfig`; build it once at startup.

    Raises :class:`ConfigError` when secure mode lacks an algorithm or key, or the key does not
    fit the algorithm (HS key shorter than 32/48/64 bytes, PEM that is not a public key of the
    algorithm's type, EC key on the wrong curve).
    """

    def __init__(self, config: AuthConfig) -> None:
        self.mode = config.mode
        self.namespace = config.namespace or None
        self.alg: JwtAlg | None = None
        self.iss = config.iss
        self.aud = config.aud
        #: Set when the key is usable but weak (an RSA key under 2048 bits, which the original
        #: accepted): log it once at startup. Never contains the key.
        self.key_warning: str | None = None
        self._key: Any = None
        self._jws = jwt.PyJWS(algorithms=[])
        self._expected = {name: v for name, v in (("iss", config.iss), ("aud", config.aud)) if v}
        self._required: tuple[str, ...] = ()
        if config.mode == "insecure":
            # Config.from_env refuses these already; an AuthConfig built by hand gets the same.
            for name, value in (
                ("AUTH_JWT_ALG", config.alg),
                ("AUTH_JWT_KEY", config.key),
                ("AUTH_JWT_ISS", config.iss),
                ("AUTH_JWT_AUD", config.aud),
            ):
                if value is not None:
                    raise ConfigError(f"{name} must not be set when AUTH_MODE=insecure")
            return
        if config.alg is None or config.key is None:
            missing = "AUTH_JWT_ALG" if config.alg is None else "AUTH_JWT_KEY"
            raise ConfigError(f"{missing} not set (required when AUTH_MODE=secure)")
        self.alg = config.alg
        # Only the configured algorithm is registered: not "none", not another family.
        self._jws = jwt.PyJWS(algorithms=[config.alg])
        try:
            self._key = _prepare_key(config.alg, config.key)
        except _Refused as e:
            raise ConfigError(f"AUTH_JWT_KEY {e.reason}") from None
        if isinstance(self._key, RSAPublicKey) and self._key.key_size < _RSA_RECOMMENDED_BITS:
            self.key_warning = (
                f"AUTH_JWT_KEY is a {self._key.key_size}-bit RSA key, below the "
                f"{_RSA_RECOMMENDED_BITS} bits recommended (NIST SP 800-131A)"
            )
        self._required = tuple(sorted(["exp", "iat", *self._expected]))

    def __repr__(self) -> str:
        return (
            f"Authenticator(mode={self.mode!r}, alg={self.alg!r}, namespace={self.namespace!r}, "
            f"iss={self.iss!r}, aud={self.aud!r})"
        )

    def authenticate(self, token: str, *, now: float | None = None) -> AuthResult | AuthFailure:
        """Validates a first ``SatAuthReq.token``: ``AUTH_REQUIRED`` when refused,
        ``INVALID_REQUEST`` when empty (§7.1)."""
        if not token:
            return AuthFailure(error_type="INVALID_REQUEST", reason=_EMPTY_TOKEN)
        try:
            if self.mode == "insecure":
                claims = self._insecure_claims(token)
            else:
                claims = self._secure_claims(token)
            _check_claims(claims, _whole_seconds(now), self._expected, self._required)
            user_id = _user_id(claims, self.namespace)
        except _Refused as e:
            return AuthFailure(error_type="AUTH_REQUIRED", reason=e.reason)
        exp = claims.get("exp")
        return AuthResult(user_id=user_id, expires_at=exp if _is_number(exp) else None)

    def renew(
        self, token: str, user_id: str, *, now: float | None = None
    ) -> AuthResult | AuthFailure:
        """Validates a token sent again on an authenticated connection (renewal): any failure,
        or a token of another user, is ``INVALID_REQUEST`` (§7.1)."""
        result = self.authenticate(token, now=now)
        if isinstance(result, AuthFailure):
            return AuthFailure(error_type="INVALID_REQUEST", reason=result.reason)
        if result.user_id != user_id:
            return AuthFailure(error_type="INVALID_REQUEST", reason=_USER_CHANGED)
        return result

    # ---- modes ---------------------------------------------------------------------------

    def _insecure_claims(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) not in (2, 3):
            raise _Refused(_INVALID_TOKEN)
        # The official client's encoder leaves every '/' after the first one in place (§6.1),
        # so the standard alphabet is tolerated here, where nothing is verified anyway.
        return _json_object(_b64decode(parts[1], lenient=True))

    def _secure_claims(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise _Refused(_INVALID_TOKEN)
        header = _json_object(_b64decode(parts[0], lenient=False))
        if header.get("alg") != self.alg:
            raise _Refused(_ALG_MISMATCH)
        assert self.alg is not None
        try:
            if self.key_warning is None:
                decoded = self._jws.decode_complete(token, self._key, algorithms=[self.alg])
            else:
                with warnings.catch_warnings():
                    # PyJWT (>= 2.11) would warn about the key length on every token.
                    warnings.simplefilter("ignore")
                    decoded = self._jws.decode_complete(token, self._key, algorithms=[self.alg])
        except jwt.PyJWTError:
            raise _Refused(_BAD_SIGNATURE) from None
        payload = decoded["payload"]
        return _json_object(payload if isinstance(payload, bytes) else None)


@functools.lru_cache(maxsize=8)
def _authenticator(config: AuthConfig) -> Authenticator:
    return Authenticator(config)


def authenticate(
    token: str, config: AuthConfig, *, now: float | None = None
) -> AuthResult | AuthFailure:
    """:meth:`Authenticator.authenticate` with an authenticator built (once, cached) from
    ``config``. Raises :class:`ConfigError` when the configuration's key is unusable."""
    return _authenticator(config).authenticate(token, now=now)


# ---- helpers ------------------------------------------------------------------------------


def _whole_seconds(now: float | None) -> int:
    """The current time in whole seconds, as Joken's clock gives it."""
    return math.floor(time.time() if now is None else now)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _expired(exp: float, now: int) -> bool:
    return exp + MAX_CLOCK_DRIFT_SECONDS < now


def _b64decode(segment: str, *, lenient: bool) -> bytes | None:
    """base64url without padding (padding tolerated); ``None`` when not decodable."""
    text = segment.rstrip("=")
    if len(segment) - len(text) > 2 or len(text) % 4 == 1:
        return None
    if not (_B64_ANY_RE if lenient else _B64URL_RE).fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(
            text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4)
        )
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the checks above
        return None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Python would make it inf, JSON has no such number
        raise ValueError("number out of range")
    return value


def _json_object(data: bytes | None) -> dict[str, Any]:
    """Decodes a JSON object (the header or the claims); anything else is a malformed token."""
    if data is None:
        raise _Refused(_INVALID_TOKEN)
    try:
        value = json.loads(
            data.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite_float
        )
    except (ValueError, RecursionError):
        raise _Refused(_INVALID_TOKEN) from None
    if not isinstance(value, dict):
        raise _Refused(_INVALID_TOKEN)
    return value


def _show(value: object) -> str:
    """A claim value for the log, Elixir-``inspect``-like and bounded."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (ValueError, RecursionError):  # pragma: no cover - came out of json.loads
        text = "<unprintable>"
    if len(text) > _MAX_SHOWN_VALUE:
        text = text[: _MAX_SHOWN_VALUE - 3] + "..."
    return text


def _check_claims(
    claims: dict[str, Any], now: int, expected: dict[str, str], required: tuple[str, ...]
) -> None:
    """Joken's order: each present claim with a rule (in key order), then the required ones."""
    for name in sorted({"aud", "exp", "iat", "iss", "nbf"}.intersection(claims)):
        value = claims[name]
        if name in ("iss", "aud"):
            if name in expected and value != expected[name]:
                raise _Refused(f"Invalid {json.dumps(name)} claim value: {_show(value)}")
            continue
        if not _is_number(value):
            raise _Refused(f"Invalid {json.dumps(name)} claim value: {_show(value)}")
        if name == "exp":
            if _expired(value, now):
                raise _Refused(_EXPIRED)
        elif value - MAX_CLOCK_DRIFT_SECONDS > now:
            if name == "nbf":
                raise _Refused(_NOT_YET_VALID)
            raise _Refused(f"Invalid {json.dumps(name)} claim value: {_show(value)}")
    for name in required:
        if name not in claims:
            raise _Refused(f"Missing required {json.dumps(name)} claim")


def _user_id(claims: dict[str, Any], namespace: str | None) -> str:
    scope: Any = claims.get(namespace) if namespace else claims
    if not isinstance(scope, dict):
        raise _Refused(_BAD_USER_ID)
    user_id = scope.get("sub")
    if user_id is None or user_id is False:  # Elixir's `||` falls through on nil and false
        user_id = scope.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        raise _Refused(_BAD_USER_ID)
    return user_id
