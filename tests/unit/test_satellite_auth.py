"""Satellite auth tokens (satellite-protocol.md §6.1, §7.1): both modes, every algorithm, every
refusal with the original's reason and the RPC's error type, and no secret in any message.

The clock is always passed in (``now=NOW``): nothing here depends on the wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import warnings
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from electric_trio.config import AuthConfig, Config, JwtAlg
from electric_trio.errors import ConfigError
from electric_trio.satellite.auth import (
    AUTH_REQUIRED,
    INVALID_REQUEST,
    Authenticator,
    AuthFailure,
    AuthResult,
    authenticate,
    key_problem,
)

NOW = 1_700_000_000
VALID = {"iat": NOW - 60, "exp": NOW + 3600, "sub": "user-1"}
NAMESPACE = "https://electric-sql.com/jwt/claims"
HS_KEYS: dict[str, bytes] = {
    "HS256": b"0123456789abcdef0123456789ABCDEF",
    "HS384": b"0123456789abcdef0123456789ABCDEF0123456789abcdef",
    "HS512": b"0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789ABCDEF",
}
CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}
ALGS: tuple[JwtAlg, ...] = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "ES256",
    "ES384",
    "ES512",
)
BASE_ENV = {
    "DATABASE_URL": "postgresql://electric:pw@db.example.com/app",
    "LOGICAL_PUBLISHER_HOST": "electric.example.com",
    "PG_PROXY_PASSWORD": "proxy-secret",
}

# Every refusal reason and configuration error seen by the tests, checked for secrets at the end.
SEEN_MESSAGES: list[str] = []


# ---- keys and tokens ----------------------------------------------------------------------


def pem(public_key: Any, fmt: serialization.PublicFormat | None = None) -> bytes:
    data: bytes = public_key.public_bytes(
        serialization.Encoding.PEM, fmt or serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


class Keys:
    """A signing key and its verification key (raw secret or PEM) for one algorithm."""

    def __init__(self, alg: str, private: Any, public: bytes) -> None:
        self.alg = alg
        self.private = private
        self.public = public


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys(rsa_key: rsa.RSAPrivateKey) -> dict[str, Keys]:
    out = {alg: Keys(alg, key, key) for alg, key in HS_KEYS.items()}
    for alg in ("RS256", "RS384", "RS512"):
        out[alg] = Keys(alg, rsa_key, pem(rsa_key.public_key()))
    for alg, curve in CURVES.items():
        private = ec.generate_private_key(curve)
        out[alg] = Keys(alg, private, pem(private.public_key()))
    return out


def secure(
    alg: JwtAlg,
    key: bytes,
    *,
    iss: str | None = None,
    aud: str | None = None,
    namespace: str | None = None,
) -> Authenticator:
    config = AuthConfig(mode="secure", alg=alg, key=key, iss=iss, aud=aud, namespace=namespace)
    return Authenticator(config)


def insecure(namespace: str | None = None) -> Authenticator:
    return Authenticator(AuthConfig(mode="insecure", namespace=namespace))


def sign(claims: dict[str, Any], keys: Keys, *, alg: str | None = None) -> str:
    return jwt.encode(claims, keys.private, algorithm=alg or keys.alg)


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any] | bytes, claims: dict[str, Any] | bytes, sig: bytes = b"") -> str:
    return f"{b64(header)}.{b64(claims)}.{b64(sig) if sig else ''}"


def official_insecure_token(claims: dict[str, Any]) -> str:
    """The TS client's ``insecureAuthToken`` (clients/typescript/src/auth/insecure.ts), quirk
    included: ``+`` -> ``-`` everywhere but only the first ``/`` -> ``_``."""

    def encode(data: dict[str, Any]) -> str:
        text = base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()
        return text.replace("+", "-").replace("/", "_", 1).rstrip("=")

    return f"{encode({'alg': 'none'})}.{encode(claims)}."


def ok(result: AuthResult | AuthFailure) -> AuthResult:
    assert isinstance(result, AuthResult), result
    return result


def refused(result: AuthResult | AuthFailure, error_type: str = "AUTH_REQUIRED") -> str:
    assert isinstance(result, AuthFailure), result
    assert result.error_type == error_type
    SEEN_MESSAGES.append(result.reason)
    return result.reason


def config_error(build: Callable[[], object]) -> str:
    with pytest.raises(ConfigError) as info:
        build()
    SEEN_MESSAGES.append(str(info.value))
    return str(info.value)


# ---- secure mode: every algorithm ---------------------------------------------------------


@pytest.mark.parametrize("alg", ALGS)
def test_each_algorithm_verifies(alg: JwtAlg, keys: dict[str, Keys]) -> None:
    auth = secure(alg, keys[alg].public)
    result = ok(auth.authenticate(sign(VALID, keys[alg]), now=NOW))
    assert result == AuthResult(user_id="user-1", expires_at=NOW + 3600)
    assert auth.key_warning is None


@pytest.mark.parametrize("alg", ALGS)
def test_each_algorithm_refuses_another_key(alg: JwtAlg, keys: dict[str, Keys]) -> None:
    if alg.startswith("HS"):
        other = Keys(alg, HS_KEYS[alg][::-1], b"")
    elif alg.startswith("RS"):
        other = Keys(alg, rsa.generate_private_key(public_exponent=65537, key_size=2048), b"")
    else:
        other = Keys(alg, ec.generate_private_key(CURVES[alg]), b"")
    auth = secure(alg, keys[alg].public)
    assert refused(auth.authenticate(sign(VALID, other), now=NOW)) == "Invalid token signature"


@pytest.mark.parametrize("alg", ALGS)
def test_each_algorithm_refuses_a_tampered_payload(alg: JwtAlg, keys: dict[str, Keys]) -> None:
    header, _, signature = sign(VALID, keys[alg]).split(".")
    tampered = f"{header}.{b64({**VALID, 'sub': 'admin'})}.{signature}"
    auth = secure(alg, keys[alg].public)
    assert refused(auth.authenticate(tampered, now=NOW)) == "Invalid token signature"


@pytest.mark.parametrize("signature", ["", "abcdefg", "AAAA"])
def test_missing_or_garbage_signature(signature: str, keys: dict[str, Keys]) -> None:
    header, payload, _ = sign(VALID, keys["HS256"]).split(".")
    auth = secure("HS256", HS_KEYS["HS256"])
    token = f"{header}.{payload}.{signature}"
    assert refused(auth.authenticate(token, now=NOW)) == "Invalid token signature"


def test_pkcs1_rsa_public_key_and_surrounding_text(rsa_key: rsa.RSAPrivateKey) -> None:
    pkcs1 = pem(rsa_key.public_key(), serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith(b"-----BEGIN RSA PUBLIC KEY-----")
    token = jwt.encode(VALID, rsa_key, algorithm="RS256")
    ok(secure("RS256", pkcs1).authenticate(token, now=NOW))
    wrapped = b"my key:\n" + pem(rsa_key.public_key()) + b"(end)\n"
    ok(secure("RS384", wrapped).authenticate(jwt.encode(VALID, rsa_key, "RS384"), now=NOW))


def test_weak_rsa_key_accepted_as_the_original_did_with_a_warning_to_log() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    auth = secure("RS256", pem(small.public_key()))
    assert auth.key_warning is not None
    assert "2048" in auth.key_warning
    with warnings.catch_warnings():  # recent PyJWT warns when signing with it too
        warnings.simplefilter("ignore")
        token = jwt.encode(VALID, small, algorithm="RS256")
    # pytest turns warnings into errors: verification must not emit one per token.
    ok(auth.authenticate(token, now=NOW))


# ---- secure mode: algorithm confusion and alg none ----------------------------------------


@pytest.mark.parametrize("alg_none", ["none", "None", "NONE", "", None])
def test_secure_refuses_unsigned_tokens(alg_none: str | None) -> None:
    auth = secure("HS256", HS_KEYS["HS256"])
    header: dict[str, Any] = {"typ": "JWT"} if alg_none is None else {"alg": alg_none}
    reason = refused(auth.authenticate(forge(header, VALID), now=NOW))
    assert reason == "Signing algorithm mismatch"
    # The official client's insecure token, unchanged.
    token = official_insecure_token(VALID)
    assert refused(auth.authenticate(token, now=NOW)) == "Signing algorithm mismatch"
    # Two segments are not even a JWS in secure mode.
    assert refused(auth.authenticate(token[:-1], now=NOW)) == "Invalid token"


def test_secure_refuses_alg_none_even_with_a_valid_hmac_signature() -> None:
    key = HS_KEYS["HS256"]
    signing_input = f"{b64({'alg': 'none'})}.{b64(VALID)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{b64(sig)}"
    assert refused(secure("HS256", key).authenticate(token, now=NOW)) == (
        "Signing algorithm mismatch"
    )


def test_public_key_used_as_hmac_secret_is_refused(keys: dict[str, Keys]) -> None:
    """The classic confusion: an HS256 token "signed" with the server's RSA public key."""
    public = keys["RS256"].public
    auth = secure("RS256", public)
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64(VALID)}"
    sig = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert refused(auth.authenticate(f"{signing_input}.{b64(sig)}", now=NOW)) == (
        "Signing algorithm mismatch"
    )
    # Claiming RS256 in the header with the HMAC signature fails the RSA verification.
    signing_input = f"{b64({'alg': 'RS256'})}.{b64(VALID)}"
    sig = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    assert refused(auth.authenticate(f"{signing_input}.{b64(sig)}", now=NOW)) == (
        "Invalid token signature"
    )


@pytest.mark.parametrize(
    ("configured", "used"),
    [("HS256", "HS512"), ("HS512", "HS256"), ("RS256", "RS512"), ("ES256", "ES384")],
)
def test_other_algorithm_of_the_same_family_refused(
    configured: JwtAlg, used: JwtAlg, keys: dict[str, Keys]
) -> None:
    signer = keys[used]
    if used.startswith("HS"):
        # Same secret, other hash: the header decides nothing.
        signer = Keys(used, HS_KEYS["HS512"], b"")
        auth = secure(configured, HS_KEYS["HS512"])
    else:
        auth = secure(configured, keys[configured].public)
    assert refused(auth.authenticate(sign(VALID, signer), now=NOW)) == (
        "Signing algorithm mismatch"
    )


def test_es_signature_of_another_curve_with_the_right_alg_header(keys: dict[str, Keys]) -> None:
    auth = secure("ES256", keys["ES256"].public)
    header, payload, _ = sign(VALID, keys["ES256"]).split(".")
    other_sig = sign(VALID, keys["ES384"]).split(".")[2]  # 96 bytes where 64 are expected
    assert refused(auth.authenticate(f"{header}.{payload}.{other_sig}", now=NOW)) == (
        "Invalid token signature"
    )


# ---- secure mode: claims ------------------------------------------------------------------


def hs(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, HS_KEYS["HS256"], algorithm="HS256")


def check(
    claims: dict[str, Any],
    *,
    now: float = NOW,
    iss: str | None = None,
    aud: str | None = None,
    namespace: str | None = None,
) -> AuthResult | AuthFailure:
    auth = secure("HS256", HS_KEYS["HS256"], iss=iss, aud=aud, namespace=namespace)
    return auth.authenticate(hs(claims), now=now)


def test_expiry_with_two_seconds_of_drift() -> None:
    assert ok(check({**VALID, "exp": NOW - 2})).expires_at == NOW - 2
    assert ok(check({**VALID, "exp": NOW - 2}, now=NOW + 0.999)).user_id == "user-1"
    assert refused(check({**VALID, "exp": NOW - 3})) == "Expired token"
    assert refused(check({**VALID, "exp": NOW - 2}, now=NOW + 1)) == "Expired token"
    assert refused(check({**VALID, "exp": 0})) == "Expired token"


def test_nbf_and_iat_in_the_future() -> None:
    assert ok(check({**VALID, "nbf": NOW + 2}))
    assert refused(check({**VALID, "nbf": NOW + 3})) == "Token is not yet valid"
    assert ok(check({**VALID, "iat": NOW + 2}))
    assert refused(check({**VALID, "iat": NOW + 3})) == f'Invalid "iat" claim value: {NOW + 3}'
    assert ok(check({**VALID, "iat": float(NOW), "exp": NOW + 0.5}))


def test_required_iat_and_exp() -> None:
    assert refused(check({"exp": NOW + 60, "sub": "u"})) == 'Missing required "iat" claim'
    assert refused(check({"iat": NOW, "sub": "u"})) == 'Missing required "exp" claim'
    assert refused(check({"sub": "u"})) == 'Missing required "exp" claim'
    # As Joken: the values present are checked before the missing claims are reported.
    assert refused(check({"exp": NOW - 60, "sub": "u"})) == "Expired token"


@pytest.mark.parametrize("value", ["1700003600", None, True, [NOW + 60], {"t": 1}])
def test_time_claims_must_be_numbers(value: object) -> None:
    for name in ("exp", "iat", "nbf"):
        reason = refused(check({**VALID, name: value}))
        assert reason == f'Invalid "{name}" claim value: {json.dumps(value)}'


def test_issuer_and_audience() -> None:
    opts: dict[str, Any] = {"iss": "https://issuer.example", "aud": "electric"}
    good = {**VALID, "iss": "https://issuer.example", "aud": "electric"}
    assert ok(check(good, **opts))
    assert refused(check({**VALID, "aud": "electric"}, **opts)) == 'Missing required "iss" claim'
    assert refused(check({**VALID, "iss": opts["iss"]}, **opts)) == 'Missing required "aud" claim'
    assert refused(check({**good, "iss": "evil"}, **opts)) == 'Invalid "iss" claim value: "evil"'
    assert refused(check({**good, "aud": "other"}, **opts)) == (
        'Invalid "aud" claim value: "other"'
    )
    # Exact match, as the original: an audience list is refused even when it holds ours.
    assert refused(check({**good, "aud": ["electric"]}, **opts)) == (
        'Invalid "aud" claim value: ["electric"]'
    )
    # Not configured: not required and not checked.
    assert ok(check({**VALID, "iss": "anyone", "aud": ["x"]}))
    assert refused(check(VALID, aud="electric")) == 'Missing required "aud" claim'


def test_long_claim_values_are_shortened_in_the_reason() -> None:
    reason = refused(check({**VALID, "iss": "x" * 10_000}, iss="me"))
    assert reason.startswith('Invalid "iss" claim value: "xxx')
    assert reason.endswith("...")
    assert len(reason) < 120


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": ""},
        {"sub": "   "},
        {"sub": 555},
        {"sub": ["u"]},
        {"user_id": ""},
        {"sub": "", "user_id": "fallback-not-taken"},
    ],
)
def test_missing_or_invalid_user_id(claims: dict[str, Any]) -> None:
    base = {"iat": NOW, "exp": NOW + 60}
    assert refused(check({**base, **claims})) == "Missing or invalid 'user_id'"


def test_legacy_user_id_claim() -> None:
    base = {"iat": NOW, "exp": NOW + 60}
    assert ok(check({**base, "user_id": "legacy"})).user_id == "legacy"
    assert ok(check({**base, "sub": None, "user_id": "legacy"})).user_id == "legacy"
    assert ok(check({**base, "sub": "s", "user_id": "legacy"})).user_id == "s"
    assert ok(check({**base, "sub": " padded "})).user_id == " padded "


def test_namespace_claim_object() -> None:
    base = {"iat": NOW, "exp": NOW + 60}
    opts: dict[str, Any] = {"namespace": NAMESPACE}
    assert ok(check({**base, NAMESPACE: {"sub": "n1"}}, **opts)).user_id == "n1"
    assert ok(check({**base, NAMESPACE: {"user_id": "n2"}}, **opts)).user_id == "n2"
    claims: dict[str, Any]
    for claims in (
        {"sub": "top-level-ignored"},
        {NAMESPACE: {}},
        {NAMESPACE: {"user_id": ""}},
        {NAMESPACE: {"user_id": 555}},
        {NAMESPACE: "n3"},
        {"custom_namespace": {"user_id": "123"}},
    ):
        assert refused(check({**base, **claims}, **opts)) == "Missing or invalid 'user_id'"
    # exp stays a top-level claim under a namespace.
    assert ok(check({**base, NAMESPACE: {"sub": "n1"}}, **opts)).expires_at == NOW + 60


# ---- keys at configuration time -----------------------------------------------------------


@pytest.mark.parametrize(("alg", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_short_hs_keys_refused_at_startup(alg: JwtAlg, minimum: int) -> None:
    key = "k" * (minimum - 1)
    env = {**BASE_ENV, "AUTH_JWT_ALG": alg, "AUTH_JWT_KEY": key}
    message = config_error(lambda: Config.from_env(env))
    assert f"AUTH_JWT_KEY has to be at least {minimum} bytes long for {alg}" in message
    # The length counts after base64 decoding.
    encoded = base64.b64encode(key.encode()).decode()
    assert len(encoded) >= minimum
    env = {**env, "AUTH_JWT_KEY": encoded, "AUTH_JWT_KEY_IS_BASE64_ENCODED": "true"}
    assert f"at least {minimum} bytes" in config_error(lambda: Config.from_env(env))
    # An AuthConfig built by hand gets the same check.
    message = config_error(lambda: secure(alg, key.encode()))
    assert message == f"AUTH_JWT_KEY has to be at least {minimum} bytes long for {alg}"
    assert secure(alg, b"k" * minimum).alg == alg


@pytest.mark.parametrize("padding", [True, False])
def test_base64_hs_key_with_and_without_padding(padding: bool) -> None:
    raw = bytes(range(1, 9)) * 4 + b"\xff\x00"  # 34 bytes: the encoding ends with padding
    encoded = base64.b64encode(raw).decode()
    assert encoded.endswith("=")
    if not padding:
        encoded = encoded.rstrip("=")
    env = {**BASE_ENV, "AUTH_JWT_ALG": "HS256", "AUTH_JWT_KEY": encoded}
    config = Config.from_env({**env, "AUTH_JWT_KEY_IS_BASE64_ENCODED": "true"})
    assert config.auth.key == raw
    token = jwt.encode(VALID, raw, algorithm="HS256")
    ok(authenticate(token, config.auth, now=NOW))
    # Without the flag the text itself is the secret: the token signed with raw bytes fails.
    plain = Config.from_env(env)
    assert plain.auth.key == encoded.encode()
    assert refused(authenticate(token, plain.auth, now=NOW)) == "Invalid token signature"
    ok(authenticate(jwt.encode(VALID, encoded.encode(), "HS256"), plain.auth, now=NOW))


def test_keys_that_do_not_fit_the_algorithm(keys: dict[str, Keys]) -> None:
    rsa_pem, p256_pem = keys["RS256"].public, keys["ES256"].public
    assert "needs an EC public key on curve P-521, this is an RSA key (2048 bits)" in (
        config_error(lambda: secure("ES512", rsa_pem))
    )
    assert "needs an EC public key on curve P-384, this is an EC key on curve secp256r1" in (
        config_error(lambda: secure("ES384", p256_pem))
    )
    assert "RS256 needs an RSA public key, this is an EC key" in (
        config_error(lambda: secure("RS256", p256_pem))
    )
    for bad in (b"...", rsa_pem[1:], rsa_pem.replace(b"MII", b"XXX", 1)):
        message = config_error(lambda bad=bad: secure("RS256", bad))  # type: ignore[misc]
        assert message.startswith("AUTH_JWT_KEY is not a valid key for AUTH_JWT_ALG=RS256")
    private_pem = keys["ES256"].private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert "invalid format" in config_error(lambda: secure("ES256", private_pem))
    # A PEM key as an HMAC secret is refused (PyJWT's algorithm-confusion guard).
    assert "not an HMAC secret" in config_error(lambda: secure("HS256", rsa_pem))
    assert key_problem("ES256", p256_pem) is None
    assert key_problem("ES256", b"nope") is not None


def test_secure_mode_without_alg_or_key() -> None:
    assert config_error(lambda: Authenticator(AuthConfig(mode="secure", key=b"k" * 64))) == (
        "AUTH_JWT_ALG not set (required when AUTH_MODE=secure)"
    )
    assert config_error(lambda: Authenticator(AuthConfig(mode="secure", alg="HS256"))) == (
        "AUTH_JWT_KEY not set (required when AUTH_MODE=secure)"
    )


def test_insecure_mode_refuses_secure_settings() -> None:
    for field, name in (("alg", "ALG"), ("key", "KEY"), ("iss", "ISS"), ("aud", "AUD")):
        value: Any = b"k" * 32 if field == "key" else "HS256" if field == "alg" else "x"
        config = AuthConfig(mode="insecure", **{field: value})
        message = config_error(lambda config=config: Authenticator(config))  # type: ignore[misc]
        assert message == f"AUTH_JWT_{name} must not be set when AUTH_MODE=insecure"


# ---- insecure mode ------------------------------------------------------------------------


def test_insecure_official_client_tokens() -> None:
    auth = insecure()
    assert ok(auth.authenticate(official_insecure_token({"sub": "alice"}), now=NOW)) == (
        AuthResult(user_id="alice", expires_at=None)
    )
    token = official_insecure_token({"user_id": "bob", "exp": NOW + 60})
    assert ok(auth.authenticate(token, now=NOW)) == AuthResult(user_id="bob", expires_at=NOW + 60)
    # Two segments: a trailing '.' is assumed.
    assert ok(auth.authenticate(token.rstrip("."), now=NOW)).user_id == "bob"


def test_insecure_accepts_the_official_encoders_second_slash() -> None:
    for pad in range(3):
        claims = {"sub": "u" * pad + "???" * 4}
        standard = base64.b64encode(json.dumps(claims, separators=(",", ":")).encode())
        if standard.count(b"/") >= 2:
            break
    else:  # pragma: no cover
        pytest.fail("no claim set encodes with two '/'")
    token = official_insecure_token(claims)
    assert "/" in token.split(".")[1]
    assert ok(insecure().authenticate(token, now=NOW)).user_id == claims["sub"]


def test_insecure_ignores_signature_and_key(keys: dict[str, Keys]) -> None:
    auth = insecure()
    for alg in ("HS256", "RS256", "ES512"):
        assert ok(auth.authenticate(sign(VALID, keys[alg]), now=NOW)).user_id == "user-1"
    assert ok(auth.authenticate(forge({"alg": "HS256"}, VALID, b"junk"), now=NOW))
    # Not even the header is read.
    assert ok(auth.authenticate(f"garbage.{b64(VALID)}.", now=NOW)).user_id == "user-1"


def test_insecure_checks_time_claims_only_when_present() -> None:
    auth = insecure()

    def run(claims: dict[str, Any]) -> AuthResult | AuthFailure:
        return auth.authenticate(official_insecure_token({"sub": "u", **claims}), now=NOW)

    assert ok(run({}))
    assert refused(run({"exp": NOW - 3})) == "Expired token"
    assert ok(run({"exp": NOW - 2}))
    assert refused(run({"nbf": NOW + 3})) == "Token is not yet valid"
    assert refused(run({"iat": NOW + 3})) == f'Invalid "iat" claim value: {NOW + 3}'
    assert refused(run({"exp": "soon"})) == 'Invalid "exp" claim value: "soon"'
    # iss and aud are never configured in insecure mode, so never checked.
    assert ok(run({"iss": "x", "aud": "y"}))


def test_insecure_user_id_and_namespace() -> None:
    plain, spaced = insecure(), insecure(NAMESPACE)
    for claims in ({}, {"sub": ""}, {"user_id": 5}, {"sub": " \t"}):
        token = official_insecure_token(claims)
        assert refused(plain.authenticate(token, now=NOW)) == "Missing or invalid 'user_id'"
    token = official_insecure_token({NAMESPACE: {"user_id": "12345"}, "sub": "top"})
    assert ok(spaced.authenticate(token, now=NOW)).user_id == "12345"
    assert ok(plain.authenticate(token, now=NOW)).user_id == "top"
    token = official_insecure_token({"sub": "top"})
    assert refused(spaced.authenticate(token, now=NOW)) == "Missing or invalid 'user_id'"


# ---- malformed tokens ---------------------------------------------------------------------

HS_HEADER = b64({"alg": "HS256"})
GARBAGE = [
    ".",
    "..",
    "...",
    "a",
    "a.b.c",
    "a.b.c.d",
    "not a jwt at all",
    "ü.ü.ü",
    b64(b"[1, 2]") + "." + b64(b"[1, 2]") + ".",
    HS_HEADER + "." + b64(b"not json") + ".",
    HS_HEADER + "." + b64(b'"a string"') + ".",
    HS_HEADER + "." + b64(b'{"exp": NaN, "sub": "u"}') + ".",
    HS_HEADER + "." + b64(b'{"exp": Infinity, "sub": "u"}') + ".",
    HS_HEADER + "." + b64(b'{"exp": 1e400, "sub": "u"}') + ".",
    HS_HEADER + "." + b64(b"\xff\xfe{}") + ".",
    HS_HEADER + "." + b64(b"[" * 100_000) + ".",
    HS_HEADER + "." + b64(b'{"iat": ' + b"9" * 5000 + b"}") + ".",
    HS_HEADER + "." + b64(VALID) + "=====.",
    HS_HEADER + "." + b64(VALID)[:-1] + "A1.",
    "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0",
]


@pytest.mark.parametrize("token", GARBAGE, ids=range(len(GARBAGE)))
@pytest.mark.parametrize("mode", ["secure", "insecure"])
def test_garbage_tokens(token: str, mode: str) -> None:
    auth = secure("HS256", HS_KEYS["HS256"]) if mode == "secure" else insecure()
    reason = refused(auth.authenticate(token, now=NOW))
    assert reason in ("Invalid token", "Signing algorithm mismatch", "Invalid token signature")
    if mode == "insecure":
        assert reason == "Invalid token"


def test_secure_header_must_be_a_json_object() -> None:
    auth = secure("HS256", HS_KEYS["HS256"])
    for header in (b"not json", b"[]", b'"HS256"', b"\xff"):
        token = b64(header) + "." + hs(VALID).split(".", 1)[1]
        assert refused(auth.authenticate(token, now=NOW)) == "Invalid token"
    # ... which insecure mode does not read at all (see test_insecure_ignores_signature_and_key).


@settings(max_examples=300, deadline=None)
@given(
    token=st.one_of(
        st.text(min_size=1),
        st.lists(st.text(alphabet="ABCDEFeyJ0-_=+/.x", max_size=40), min_size=1, max_size=5).map(
            ".".join
        ),
    ).filter(bool)
)
def test_any_text_is_refused_without_raising(token: str) -> None:
    for auth in (secure("HS256", HS_KEYS["HS256"]), insecure()):
        result = auth.authenticate(token, now=NOW)
        assert isinstance(result, AuthFailure)
        assert result.error_type == "AUTH_REQUIRED"
        if len(token) >= 16:
            assert token not in result.reason


# ---- the RPC's error types ----------------------------------------------------------------


def test_empty_token_is_an_invalid_request() -> None:
    for auth in (secure("HS256", HS_KEYS["HS256"]), insecure()):
        failure = auth.authenticate("", now=NOW)
        assert refused(failure, "INVALID_REQUEST") == "Empty token"
        assert isinstance(failure, AuthFailure)
        assert failure.error_code == INVALID_REQUEST == 4


def test_first_authentication_failures_are_auth_required() -> None:
    failure = secure("HS256", HS_KEYS["HS256"]).authenticate("x.y.z", now=NOW)
    assert isinstance(failure, AuthFailure)
    assert (failure.error_type, failure.error_code) == ("AUTH_REQUIRED", AUTH_REQUIRED)
    assert AUTH_REQUIRED == 1


def test_renewal() -> None:
    auth = secure("HS256", HS_KEYS["HS256"])
    assert ok(auth.renew(hs(VALID), "user-1", now=NOW)).user_id == "user-1"
    other = hs({**VALID, "sub": "user-2"})
    assert refused(auth.renew(other, "user-1", now=NOW), "INVALID_REQUEST") == (
        "can't change user ID on renewal"
    )
    expired = hs({**VALID, "exp": NOW - 60})
    assert refused(auth.renew(expired, "user-1", now=NOW), "INVALID_REQUEST") == "Expired token"
    assert refused(auth.renew("", "user-1", now=NOW), "INVALID_REQUEST") == "Empty token"


def test_expiry_of_an_accepted_token() -> None:
    result = ok(check({**VALID, "exp": NOW + 10}))
    assert not result.is_expired(NOW + 12)
    assert result.is_expired(NOW + 13)
    assert not AuthResult(user_id="u").is_expired(NOW)


def test_module_function_builds_the_authenticator_once() -> None:
    config = AuthConfig(mode="secure", alg="HS256", key=HS_KEYS["HS256"])
    assert ok(authenticate(hs(VALID), config, now=NOW)).user_id == "user-1"
    assert refused(authenticate(hs({**VALID, "exp": 1}), config, now=NOW)) == "Expired token"
    with pytest.raises(ConfigError):
        authenticate("x", AuthConfig(mode="secure", alg="HS256", key=b"short"))


def test_clock_defaults_to_now() -> None:
    import time

    now = time.time()
    claims = {"iat": int(now) - 5, "exp": int(now) + 3600, "sub": "u"}
    ok(secure("HS256", HS_KEYS["HS256"]).authenticate(hs(claims)))
    stale = {"iat": 1, "exp": 100, "sub": "u"}
    assert refused(secure("HS256", HS_KEYS["HS256"]).authenticate(hs(stale))) == "Expired token"


# ---- no secrets ---------------------------------------------------------------------------


@pytest.fixture
def all_messages(keys: dict[str, Keys]) -> list[str]:
    """Every message produced while refusing tokens signed with real keys, plus the ones the
    other tests collected."""
    messages = list(SEEN_MESSAGES)
    for alg in ALGS:
        auth = secure(alg, keys[alg].public, iss="issuer", aud="aud")
        messages.append(repr(auth))
        for claims in (VALID, {}, {**VALID, "iss": "x"}, {**VALID, "exp": 0}):
            for token in (sign(claims, keys[alg]), sign(claims, keys[alg]) + "x"):
                result = auth.authenticate(token, now=NOW)
                assert isinstance(result, AuthFailure)
                messages.append(result.reason)
                messages.append(repr(result))
                assert token not in result.reason
    return messages


def test_no_key_or_token_in_any_message(all_messages: list[str], keys: dict[str, Keys]) -> None:
    assert len(all_messages) > 100
    secrets: list[str] = []
    for k in keys.values():
        secrets.append(k.public.decode(errors="replace"))
        if k.alg.startswith("HS"):
            secrets.append(base64.b64encode(k.public).decode())
        else:
            body = b"".join(k.public.splitlines()[1:-1]).decode()
            secrets.extend([body, body[10:40]])
    for message in all_messages:
        for secret in secrets:
            assert secret not in message
    config = AuthConfig(mode="secure", alg="HS256", key=HS_KEYS["HS256"])
    assert HS_KEYS["HS256"].decode() not in repr(config) + repr(Authenticator(config))
