"""Fetching and reading the service's migrations (``GET /api/migrations?dialect=sqlite``)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import ssl
import urllib.parse
import zipfile
from dataclasses import dataclass

import h11
import trio

from ..errors import ElectricError
from ..satellite.messages import SatOpMigrate, decode_message

__all__ = ["FetchedMigration", "GenerateError", "fetch_migrations", "migrations_url", "read_zip"]

_MAX_BODY = 256 * 1024 * 1024


class GenerateError(ElectricError):
    """Something the generator cannot go on with; the message says what, in one line."""


@dataclass(frozen=True)
class FetchedMigration:
    """One migration of the zip: its version and its decoded ops."""

    version: str
    ops: tuple[SatOpMigrate, ...]


def migrations_url(service: str, version: str | None = None) -> str:
    """``<service>/api/migrations?dialect=sqlite[&version=<v>]``; :class:`GenerateError` for a
    URL that is not ``http(s)://host[:port]``."""
    try:
        parts = urllib.parse.urlsplit(service)
        port = parts.port
    except ValueError as exc:
        raise GenerateError(f"bad service URL {service!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GenerateError(f"bad service URL {service!r}: expected http(s)://host[:port]")
    del port
    query = {"dialect": "sqlite"}
    if version is not None:
        query["version"] = version
    path = parts.path.rstrip("/") + "/api/migrations"
    return urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, path, urllib.parse.urlencode(query), "")
    )


async def http_get(url: str, *, within: float = 30.0) -> tuple[int, bytes]:
    """``GET url``: status and body. :class:`GenerateError` when the server cannot be reached
    or does not answer HTTP within ``within`` seconds."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    where = f"{host}:{port}"
    conn = h11.Connection(h11.CLIENT)
    try:
        with trio.fail_after(within):
            stream: trio.abc.Stream
            if parts.scheme == "https":
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=ssl.create_default_context()
                )
            else:
                stream = await trio.open_tcp_stream(host, port)
            async with stream:
                request = h11.Request(
                    method="GET",
                    target=target,
                    headers=[("Host", parts.netloc), ("Connection", "close")],
                )
                await stream.send_all(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
                status, body = 0, bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(bytes(await stream.receive_some(65536)))
                    elif isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > _MAX_BODY:
                            raise GenerateError(f"the answer of {where} is too large")
                    elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                        return status, bytes(body)
    except trio.TooSlowError:
        raise GenerateError(f"no answer from the service at {where} within {within:g} s") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise GenerateError(f"cannot reach the service at {where}: {reason}") from None
    except (h11.ProtocolError, trio.BrokenResourceError, ssl.SSLError) as exc:
        raise GenerateError(f"the service at {where} did not answer HTTP: {exc}") from None


async def fetch_migrations(
    service: str, version: str | None = None, *, within: float = 30.0
) -> list[FetchedMigration] | None:
    """The migrations after ``version`` (all when ``None``), in order; ``None`` for a 204 (no
    migration). :class:`GenerateError` for any other answer than 200/204 or a bad zip."""
    url = migrations_url(service, version)
    status, body = await http_get(url, within=within)
    if status == 204:
        return None
    if status != 200:
        detail = body[:200].decode("utf-8", "replace").strip()
        raise GenerateError(
            f"failed to fetch migrations from {url}: got status {status}"
            + (f" ({detail})" if detail else "")
        )
    return read_zip(body)


def read_zip(body: bytes) -> list[FetchedMigration]:
    """The migrations of a ``/api/migrations`` zip, ordered by folder name (their versions)."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            names = zf.namelist()
            folders = sorted({n.split("/", 1)[0] for n in names if "/" in n})
            out = []
            for folder in folders:
                member = f"{folder}/metadata.json"
                if member not in names:
                    raise GenerateError(f"corrupt migrations zip: {folder}/ has no metadata.json")
                out.append(_read_metadata(folder, zf.read(member)))
            return out
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as exc:
        raise GenerateError(f"corrupt migrations zip: {exc}") from None


def _read_metadata(folder: str, raw: bytes) -> FetchedMigration:
    where = f"corrupt migrations zip: {folder}/metadata.json"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise GenerateError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict) or set(data) != {
        "format",
        "ops",
        "protocol_version",
        "version",
    }:
        raise GenerateError(f"{where} does not have the four keys of the format")
    if data["format"] != "SatOpMigrate" or data["protocol_version"] != "Electric.Satellite":
        raise GenerateError(
            f"{where}: unsupported format {data['format']!r} / {data['protocol_version']!r}"
        )
    version, ops = data["version"], data["ops"]
    if not isinstance(version, str) or not isinstance(ops, list):
        raise GenerateError(f"{where}: bad version or ops")
    try:
        decoded = tuple(
            decode_message(SatOpMigrate, base64.b64decode(op, validate=True)) for op in ops
        )
    except (binascii.Error, TypeError, ValueError, ElectricError) as exc:
        raise GenerateError(f"{where}: an op does not decode: {exc}") from None
    return FetchedMigration(version=version, ops=decoded)
