"""The publisher's pure parts: its SCRAM-SHA-256 server against the exchange of RFC 7677 §3 and
libpq's shape of it (no user name) and what it refuses; the subscription's connection string;
how the subscriber's queries are read."""

from __future__ import annotations

import base64
import hashlib

import scramp

from electric_trio.writes.publisher import _conninfo_value, _normalize, _ScramServer

SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def server(password: str, nonce: str | None = None) -> _ScramServer:
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, 4096)
    return _ScramServer(SALT, salted, 4096, nonce)


def test_rfc_7677_exchange() -> None:
    s = server("pencil", nonce="%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    first = s.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    assert first == (
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    final = s.final(
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    assert final == "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_a_client_with_the_password_gets_in_and_checks_us() -> None:
    s = server("secret")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "anyone", "secret")
    first = s.first(client.get_client_first().encode())
    assert first is not None
    client.set_server_first(first)
    final = s.final(client.get_client_final().encode())
    assert final is not None
    client.set_server_final(final)  # raises if our signature were wrong


def test_wrong_password_or_tampering_is_refused() -> None:
    s = server("secret")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "anyone", "guess")
    first = s.first(client.get_client_first().encode())
    assert first is not None
    client.set_server_first(first)
    assert s.final(client.get_client_final().encode()) is None

    s = server("secret")
    client = scramp.ScramClient(["SCRAM-SHA-256"], "anyone", "secret")
    first = s.first(client.get_client_first().encode())
    assert first is not None
    client.set_server_first(first)
    good = client.get_client_final()
    assert s.final(good.replace("r=", "r=x").encode()) is None  # another nonce
    assert s.final(b"garbage") is None


def test_channel_binding_requests_are_refused() -> None:
    # we offer SCRAM-SHA-256 only: a client asking for channel binding gets no exchange
    assert server("x").first(b"p=tls-server-end-point,,n=,r=abc") is None
    assert server("x").first(b"n,,n=,") is None


def test_connection_string_values_are_quoted_when_needed() -> None:
    assert _conninfo_value("127.0.0.1") == "127.0.0.1"
    assert _conninfo_value("electric.internal") == "electric.internal"
    assert _conninfo_value("my host") == "'my host'"
    assert _conninfo_value("a'b\\c") == "'a\\'b\\\\c'"
    assert _conninfo_value("") == "''"


def test_queries_are_read_with_whitespace_collapsed_outside_quotes() -> None:
    sql = (
        "SELECT DISTINCT t.schemaname, t.tablename\n  FROM pg_catalog.pg_publication_tables t\n"
        " WHERE t.pubname IN ('a  b', 'c');\n"
    )
    assert _normalize(sql) == (
        "SELECT DISTINCT t.schemaname, t.tablename FROM pg_catalog.pg_publication_tables t"
        " WHERE t.pubname IN ('a  b', 'c')"
    )
