"""Secrets at rest and settings validation, in memory and on a temporary directory."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from bootstrap.config import Settings, parse_hostport
from bootstrap.errors import ConfigError
from bootstrap.secretbox import SecretBox, SecretError, load_master_key


def test_seal_and_open_round_trip() -> None:
    """A sealed secret opens with the same key and context, and does not contain the plaintext."""
    box = SecretBox(os.urandom(32))
    blob = box.seal(b"hmac-key-0123", context="certificate_issuers:a:credentials")
    assert b"hmac-key-0123" not in blob
    assert box.open(blob, context="certificate_issuers:a:credentials") == b"hmac-key-0123"


def test_other_context_other_key_or_tampering_fail() -> None:
    """Moving a blob to another row, using another key, or flipping a bit all fail."""
    box = SecretBox(os.urandom(32))
    blob = box.seal(b"secret", context="row-a")
    with pytest.raises(SecretError):
        box.open(blob, context="row-b")
    with pytest.raises(SecretError, match="another master key"):
        SecretBox(os.urandom(32)).open(blob, context="row-a")
    tampered = bytearray(blob)
    tampered[-1] ^= 1
    with pytest.raises(SecretError):
        box.open(bytes(tampered), context="row-a")
    with pytest.raises(SecretError):
        box.open(b"short", context="row-a")


def test_master_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    """The embedded default creates a 0600 key file once and reads it back afterwards."""
    path = tmp_path / "data" / "master.key"
    first = load_master_key(None, path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(None, path, create=True) == first


def test_master_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    """A key file with group/other permissions stops the server with one line."""
    path = tmp_path / "master.key"
    path.write_text(base64.b64encode(os.urandom(32)).decode())
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_master_key(None, path, create=False)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_bad_explicit_master_key(value: str, tmp_path: Path) -> None:
    """A malformed key in the environment is a configuration error."""
    with pytest.raises(ConfigError, match="master key"):
        load_master_key(value, tmp_path / "unused", create=False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0.0.0.0:5683", ("0.0.0.0", 5683)),
        ("localhost", ("localhost", 5683)),
        (":6000", ("127.0.0.1", 6000)),
        ("[::1]:5684", ("::1", 5684)),
    ],
)
def test_parse_hostport(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT forms, with defaults and IPv6 brackets."""
    assert parse_hostport(text, 5683, option="--coap") == expected


@pytest.mark.parametrize("text", ["host:99999", "[nothex]:1", "a:b:c", ""])
def test_parse_hostport_errors(text: str) -> None:
    """Bad listener addresses name the option."""
    with pytest.raises(ConfigError, match="--coap"):
        parse_hostport(text, 5683, option="--coap")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("database_url", "mysql://x", "database-url"),
        ("log_format", "xml", "log-format"),
        ("cert_validity_days", 0, "cert-validity-days"),
        ("max_pending_signatures", 0, "max-pending-signatures"),
        ("dtls_receive_buffer", 1000, "dtls-receive-buffer"),
    ],
)
def test_settings_validation(field: str, value: object, message: str, tmp_path: Path) -> None:
    """Each bad setting raises a ConfigError naming it."""
    with pytest.raises(ConfigError, match=message):
        Settings(data_dir=tmp_path, **{field: value})  # type: ignore[arg-type]
