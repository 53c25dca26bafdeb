"""Bootstrap configuration rules and the Security/Server instances planned from them."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from bootstrap.bootstrap_plan import (
    OSCORE_IID,
    BootstrapConfig,
    DeviceCredentials,
    OscoreContext,
    SecurityModeName,
    choose_instance_ids,
    plan_objects,
)
from bootstrap.errors import BadRequest
from bootstrap.lwm2m import (
    SUPPORTED_FORMATS,
    ObjLink,
    OscoreResource,
    Path,
    SecurityMode,
    SecurityResource,
    decode,
    encode,
)
from tests.session_helpers import config_for, credentials_for, self_signed

MODES: tuple[SecurityModeName, ...] = ("est", "certificate", "psk", "nosec")
SERVER_CERT = self_signed("lwm2m.example")[0]


@pytest.mark.parametrize("mode", MODES)
def test_valid_configurations_pass(mode: SecurityModeName) -> None:
    """Each mode's reference configuration validates."""
    config_for(mode).validate()


@pytest.mark.parametrize(
    ("mode", "overrides", "field"),
    [
        ("nosec", {"server_uri": "coaps://lwm2m.example"}, "server_uri"),
        ("psk", {"server_uri": "coap://lwm2m.example"}, "server_uri"),
        ("est", {"server_uri": "coap+tcp://lwm2m.example", "binding": "T"}, "server_uri"),
        ("psk", {"server_uri": "http://lwm2m.example"}, "server_uri"),
        ("psk", {"server_uri": "coaps://"}, "server_uri"),
        ("psk", {"server_uri": "coaps://host:notaport"}, "server_uri"),
        ("psk", {"security_mode": "rpk"}, "security_mode"),
        ("est", {"server_certificate_der": None}, "server_certificate_der"),
        ("certificate", {"server_certificate_der": b"not a certificate"}, "server_certificate_der"),
        ("psk", {"server_certificate_der": SERVER_CERT}, "server_certificate_der"),
        ("nosec", {"certificate_usage": 3}, "certificate_usage"),
        ("est", {"certificate_usage": 4}, "certificate_usage"),
        ("psk", {"short_server_id": 0}, "short_server_id"),
        ("psk", {"short_server_id": 65535}, "short_server_id"),
        ("psk", {"lifetime": 0}, "lifetime"),
        ("psk", {"binding": "X"}, "binding"),
        ("psk", {"binding": "UU"}, "binding"),
        ("psk", {"binding": "T"}, "binding"),
        ("psk", {"server_uri": "coaps+tcp://lwm2m.example", "binding": "U"}, "binding"),
        ("psk", {"default_pmin": -1}, "default_pmin"),
        ("psk", {"default_pmin": 60, "default_pmax": 30}, "default_pmax"),
    ],
)
def test_invalid_configurations_name_the_field(
    mode: SecurityModeName, overrides: dict[str, object], field: str
) -> None:
    """validate() raises BadRequest with the offending field set."""
    with pytest.raises(BadRequest) as caught:
        config_for(mode, **overrides).validate()
    assert caught.value.field == field
    assert caught.value.coap_code == "4.00"


def test_est_plan_has_server_certificate_only() -> None:
    """EST (mode 4): /4 holds the server certificate, /3 and /5 are empty, ssid links /0 and /1."""
    objects = plan_objects(config_for("est", certificate_usage=1), None, security_iid=1, server_iid=2)
    security = objects[0][1]
    assert security == {
        0: "coaps://lwm2m.example:5684",
        1: False,
        2: SecurityMode.EST,
        3: b"",
        4: SERVER_CERT,
        5: b"",
        10: 101,
        15: 1,
    }
    assert objects[1] == {2: {0: 101, 1: 3600, 6: True, 7: "U"}}


def test_certificate_plan_carries_device_material() -> None:
    """Certificate (mode 2): /3 client certificate, /4 server certificate, /5 PKCS#8 key."""
    credentials = credentials_for("certificate")
    assert credentials is not None
    security = plan_objects(config_for("certificate"), credentials, security_iid=1, server_iid=1)[0][1]
    assert security[2] == SecurityMode.CERTIFICATE
    assert security[3] == credentials.client_certificate_der
    assert security[4] == SERVER_CERT
    assert security[5] == credentials.private_key_der
    assert 15 not in security


def test_psk_plan_leaves_server_public_key_unused() -> None:
    """PSK (mode 0): /3 identity, /5 key, /4 empty (the TS says it MUST NOT be used)."""
    security = plan_objects(config_for("psk"), credentials_for("psk"), security_iid=3, server_iid=1)[0][3]
    assert (security[2], security[3], security[4], security[5]) == (0, b"dev-1", b"", bytes(range(16)))


def test_nosec_plan_and_optional_server_resources() -> None:
    """NoSec (mode 3) has no key material; pmin/pmax and notification storing are written when set."""
    config = config_for("nosec", default_pmin=10, default_pmax=300, notification_storing=False, binding="UQ")
    objects = plan_objects(config, None, security_iid=1, server_iid=1)
    assert objects[0][1][2] == SecurityMode.NOSEC
    assert objects[1][1] == {0: 101, 1: 3600, 2: 10, 3: 300, 6: False, 7: "UQ"}


def test_legacy_clients_get_no_certificate_usage_and_no_est() -> None:
    """LwM2M 1.0 clients do not get /0/x/15, and EST mode is refused for them."""
    config = config_for("certificate", certificate_usage=2)
    security = plan_objects(
        config, credentials_for("certificate"), security_iid=1, server_iid=1, lwm2m_version="1.0"
    )[0][1]
    assert 15 not in security
    with pytest.raises(BadRequest, match=r"1\.1"):
        plan_objects(config_for("est"), None, security_iid=1, server_iid=1, lwm2m_version="1.0")


def _pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


@pytest.mark.parametrize(
    ("mode", "credentials", "field"),
    [
        ("certificate", None, "credentials"),
        ("psk", None, "credentials"),
        ("psk", DeviceCredentials(psk_identity=b"dev-1"), "psk_key"),
        ("psk", DeviceCredentials(psk_identity=b"x" * 129, psk_key=b"k" * 16), "psk_identity"),
        ("psk", DeviceCredentials(psk_identity=b"dev-1", psk_key=b"k" * 65), "psk_key"),
        (
            "psk",
            DeviceCredentials(psk_identity=b"dev-1", psk_key=b"k" * 16, private_key_der=b"x"),
            "private_key_der",
        ),
        ("certificate", DeviceCredentials(client_certificate_der=self_signed("dev-1")[0]), "private_key_der"),
        (
            "certificate",
            DeviceCredentials(client_certificate_der=b"junk", private_key_der=self_signed("dev-1")[1]),
            "client_certificate_der",
        ),
        (
            "certificate",
            DeviceCredentials(
                client_certificate_der=self_signed("dev-1")[0],
                private_key_der=_pkcs8(ec.generate_private_key(ec.SECP256R1())),
            ),
            "private_key_der",
        ),
        (
            "certificate",
            DeviceCredentials(
                client_certificate_der=self_signed("dev-1")[0],
                private_key_der=b"\x30\x03\x02\x01\x01",
            ),
            "private_key_der",
        ),
        ("est", DeviceCredentials(psk_identity=b"dev-1", psk_key=b"k" * 16), "credentials"),
        ("nosec", DeviceCredentials(), "credentials"),
    ],
)
def test_credentials_must_fit_the_mode(
    mode: SecurityModeName, credentials: DeviceCredentials | None, field: str
) -> None:
    """Missing, superfluous, oversized or mismatched device material is a BadRequest naming it."""
    with pytest.raises(BadRequest) as caught:
        plan_objects(config_for(mode), credentials, security_iid=1, server_iid=1)
    assert caught.value.field == field


def test_sec1_key_is_refused() -> None:
    """A SEC1 (traditional OpenSSL) EC key is not RFC 5958 and is refused for /0/x/5."""
    cert, pkcs8 = self_signed("dev-1")
    key = load_der_private_key(pkcs8, password=None)
    sec1 = key.private_bytes(Encoding.DER, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    with pytest.raises(BadRequest, match="PKCS#8"):
        DeviceCredentials(client_certificate_der=cert, private_key_der=sec1).check("certificate")


def test_secrets_stay_out_of_repr() -> None:
    """Keys do not appear in repr(), so logging the credentials leaks nothing."""
    text = repr(DeviceCredentials(psk_identity=b"dev-1", psk_key=b"supersecretkey!!"))
    assert "dev-1" in text
    assert "supersecretkey" not in text


@pytest.mark.parametrize(
    ("spared", "expected"),
    [((), (1, 1)), ((0,), (1, 1)), ((1,), (2, 1)), ((1, 2), (3, 1))],
)
def test_instance_ids_avoid_the_bootstrap_account(spared: tuple[int, ...], expected: tuple[int, int]) -> None:
    """The Security instance never lands on a spared (bootstrap account) instance."""
    assert choose_instance_ids(spared) == expected


def test_config_is_frozen_and_keyword_only() -> None:
    """Configurations are immutable and built by keyword."""
    config = config_for("psk")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lifetime = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        BootstrapConfig("coaps://x", "psk")  # type: ignore[call-arg]


@settings(max_examples=60, deadline=None)
@given(
    identity=st.binary(min_size=1, max_size=128),
    key=st.binary(min_size=1, max_size=64),
    ssid=st.integers(1, 65534),
    lifetime=st.integers(1, 2**31 - 1),
    iid=st.integers(0, 65535),
    fmt=st.sampled_from(sorted(SUPPORTED_FORMATS)),
)
def test_psk_plans_round_trip_through_every_format(
    identity: bytes, key: bytes, ssid: int, lifetime: int, iid: int, fmt: int
) -> None:
    """Whatever the PSK material and ids, the planned instances decode back unchanged in every format."""
    config = config_for("psk", short_server_id=ssid, lifetime=lifetime)
    objects = plan_objects(
        config, DeviceCredentials(psk_identity=identity, psk_key=key), security_iid=iid, server_iid=iid
    )
    for object_id, instances in objects.items():
        path = Path(object_id, iid)
        assert decode(fmt, encode(fmt, path, instances), path) == instances


OSCORE_CONTEXT = OscoreContext(
    master_secret=bytes(range(32)), sender_id=b"\x01\x02", recipient_id=b"\x03", master_salt=b"salt"
)


@pytest.mark.parametrize("fmt", sorted(SUPPORTED_FORMATS))
def test_oscore_plan_links_a_per_device_context(fmt: int) -> None:
    """nosec + oscore: /0/x/17 links /21/1, which holds the context (RFC 8613 §3.2 defaults), and
    every format carries the three objects back unchanged."""
    config = config_for("nosec", oscore=True)
    objects = plan_objects(config, DeviceCredentials(oscore=OSCORE_CONTEXT), security_iid=2, server_iid=1)
    assert sorted(objects) == [0, 1, 21]
    security = objects[0][2]
    assert security[SecurityResource.SECURITY_MODE] == SecurityMode.NOSEC
    assert security[SecurityResource.OSCORE_SECURITY_MODE] == ObjLink(21, OSCORE_IID)
    assert objects[21][OSCORE_IID] == {
        OscoreResource.MASTER_SECRET: bytes(range(32)),
        OscoreResource.SENDER_ID: b"\x01\x02",
        OscoreResource.RECIPIENT_ID: b"\x03",
        OscoreResource.AEAD_ALGORITHM: 10,
        OscoreResource.HMAC_ALGORITHM: -10,
        OscoreResource.MASTER_SALT: b"salt",
    }
    if fmt == 11542:  # TLV serves 1.0 clients, which OSCORE does not: the plan for them is refused
        with pytest.raises(BadRequest, match=r"LwM2M 1\.1"):
            plan_objects(
                config,
                DeviceCredentials(oscore=OSCORE_CONTEXT),
                security_iid=2,
                server_iid=1,
                lwm2m_version="1.0",
            )
    for object_id, instances in objects.items():
        path = Path(object_id)
        assert decode(fmt, encode(fmt, path, instances), path) == instances


def test_oscore_rules() -> None:
    """oscore only protects nosec; it needs a context, and a sound one; no context without oscore."""
    for mode in ("est", "certificate", "psk"):
        with pytest.raises(BadRequest) as caught:
            config_for(mode, oscore=True).validate()
        assert caught.value.field == "oscore"
    config = config_for("nosec", oscore=True)
    with pytest.raises(BadRequest, match="needs device credentials"):
        plan_objects(config, None, security_iid=1, server_iid=1)
    for bad, message in (
        (dataclasses.replace(OSCORE_CONTEXT, recipient_id=b"\x01\x02"), "must differ"),
        (dataclasses.replace(OSCORE_CONTEXT, sender_id=bytes(8)), "at most 7 bytes"),
        (dataclasses.replace(OSCORE_CONTEXT, master_secret=bytes(15)), "at least 16 bytes"),
    ):
        with pytest.raises(BadRequest, match=message):
            plan_objects(config, DeviceCredentials(oscore=bad), security_iid=1, server_iid=1)
    with pytest.raises(BadRequest, match="takes no psk_key"):
        plan_objects(
            config, DeviceCredentials(oscore=OSCORE_CONTEXT, psk_key=b"k"), security_iid=1, server_iid=1
        )
    with pytest.raises(BadRequest, match="does not ask for oscore"):
        plan_objects(
            config_for("nosec"), DeviceCredentials(oscore=OSCORE_CONTEXT), security_iid=1, server_iid=1
        )
    assert "master_secret" not in repr(OSCORE_CONTEXT)  # the secret stays out of logs
