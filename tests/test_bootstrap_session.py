"""The bootstrap session state machine against the simulated LwM2M client, in memory."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrap.bootstrap_plan import DeviceCredentials, OscoreContext, SecurityModeName
from bootstrap.errors import BadRequest, NotAcceptable
from bootstrap.lwm2m import ContentFormat, ObjLink, Path, SecurityMode, decode, encode
from bootstrap.lwm2m.session import (
    PACK_FORMATS,
    TRANSITIONS,
    BootstrapSession,
    Event,
    OperationKind,
    SessionError,
    State,
    build_pack,
    request_version,
)
from device_sim.lwm2m_client import ClientError, SimLwm2mClient
from tests.session_helpers import START, DevicePair, config_for, credentials_for, make_pair, self_signed

MODES: tuple[SecurityModeName, ...] = ("est", "certificate", "psk", "nosec")
MODE_NUMBER = {"est": 4, "certificate": 2, "psk": 0, "nosec": 3}
BS_URI = "coaps://bootstrap.example:5784"
# A factory server account (ssid 7) the bootstrap must replace.
FACTORY = {
    0: {2: {0: "coaps://old.example", 1: False, 2: 0, 3: b"old", 4: b"", 5: b"oldkey", 10: 7}},
    1: {0: {0: 7, 1: 60, 6: True, 7: "U"}},
}
ACL = {2: {0: {0: 1, 1: 0, 2: {101: 15}, 3: 101}}}
TLV = int(ContentFormat.TLV)
# (pct the Bootstrap-Request carried, the client's version, the Write format expected)
FORMATS = [
    (None, "1.0", TLV),
    (110, "1.1", 110),
    (112, "1.1", 112),
    (11544, "1.2", 11544),
]


def bootstrap_account(client: SimLwm2mClient, iid: int = 0) -> dict[int, object]:
    """The client's bootstrap account instance."""
    return dict(client.objects[0][iid])


@pytest.mark.parametrize(
    ("mode", "pct", "version", "fmt"),
    # EST needs LwM2M 1.1: test_est_is_refused_for_legacy_clients covers 1.0.
    [(mode, *case) for mode in MODES for case in FORMATS if not (mode == "est" and case[1] == "1.0")],
)
def test_bootstrap_provisions_the_server_account(
    mode: SecurityModeName, pct: int | None, version: str, fmt: int
) -> None:
    """Each mode and format: Discover, Deletes, Writes in that format, Finish; the device has the account."""
    client = SimLwm2mClient(lwm2m_version=version, factory=FACTORY)  # type: ignore[arg-type]
    before = bootstrap_account(client)
    pair = make_pair(mode, pct=pct, client=client)
    pair.run()

    assert pair.session.outcome == "success", pair.session.reason
    assert pair.session.reason is None
    assert [(op.method, op.path) for op in pair.sent] == [
        ("GET", "/"),
        ("DELETE", "/0/2"),
        ("DELETE", "/1/0"),
        ("PUT", "/0/1"),
        ("PUT", "/1/1"),
        ("POST", "/bs"),
    ]
    assert pair.sent[0].accept == ContentFormat.LINK_FORMAT
    assert {op.content_format for op in pair.sent if op.kind is OperationKind.WRITE} == {fmt}
    account = client.server_account()
    assert account is not None
    assert (account.uri, account.security_mode, account.ssid) == (
        config_for(mode).server_uri,
        MODE_NUMBER[mode],
        101,
    )
    assert (account.security_iid, account.server_iid, account.lifetime, account.binding) == (1, 1, 3600, "U")
    if mode in ("est", "certificate"):
        assert account.server_certificate_der == self_signed("lwm2m.example")[0]
    credentials = credentials_for(mode)
    if mode == "psk" and credentials is not None:
        assert (account.public_key_or_identity, account.secret_key) == (
            credentials.psk_identity,
            credentials.psk_key,
        )
    assert bootstrap_account(client) == before
    assert client.finished
    assert pair.session.get_timer() is None
    assert pair.session.next_operation() is None


def test_est_is_refused_for_legacy_clients() -> None:
    """A 1.0 client (no pct, no version in Discover) cannot be given EST: failed before any Write."""
    pair = make_pair("est", pct=None, client=SimLwm2mClient(lwm2m_version="1.0"))
    pair.run()
    assert pair.session.outcome == "failed"
    assert "needs an LwM2M 1.1" in (pair.session.reason or "")
    assert pair.paths("PUT") == []


def test_discover_version_overrides_the_guess() -> None:
    """No pct suggests 1.0, but a Discover saying 1.1 allows EST; the Writes stay TLV."""
    pair = make_pair("est", pct=None, client=SimLwm2mClient(lwm2m_version="1.1"))
    assert pair.session.lwm2m_version == "1.0"
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert pair.session.lwm2m_version == "1.1"
    assert pair.session.content_format == ContentFormat.TLV


@pytest.mark.parametrize("code", ["4.00", "4.04", "4.05"])
def test_discover_unsupported_falls_back_to_delete_root(code: str) -> None:
    """A client without Bootstrap-Discover gets Delete "/", which spares its bootstrap account."""
    client = SimLwm2mClient(factory=FACTORY, discover_code=code)  # type: ignore[arg-type]
    before = bootstrap_account(client)
    pair = make_pair("psk", client=client)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert [(op.method, op.path) for op in pair.sent] == [
        ("GET", "/"),
        ("DELETE", "/"),
        ("PUT", "/0/1"),
        ("PUT", "/1/1"),
        ("POST", "/bs"),
    ]
    assert pair.session.discovered is None
    assert sorted(client.objects[0]) == [0, 1]
    assert bootstrap_account(client) == before


@pytest.mark.parametrize("code", ["4.04", "2.02"])
def test_delete_of_missing_instance_is_tolerated(code: str) -> None:
    """4.04 (Wakaama) or 2.02 (Anjay) to a Delete both count as success."""
    pair = make_pair("nosec", factory=FACTORY)
    pair.overrides[("DELETE", "/1/0")] = (code, b"", None)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason


@pytest.mark.parametrize(
    ("method", "path", "code", "reason"),
    [
        ("POST", "/bs", "4.06", "Finish answered 4.06 (inconsistent configuration)"),
        ("POST", "/bs", "5.00", "Finish answered 5.00 (internal server error)"),
        ("PUT", "/0/1", "4.00", "Write /0/1 answered 4.00 (bad request)"),
        ("PUT", "/1/1", "4.15", "Write /1/1 answered 4.15 (unsupported content format)"),
        ("DELETE", "/0/2", "4.01", "Delete /0/2 answered 4.01 (unauthorized)"),
        ("GET", "/", "5.03", "Discover / answered 5.03 (service unavailable)"),
        ("GET", "/", "4.06", "Discover / answered 4.06 (not acceptable)"),
    ],
)
def test_error_answers_fail_with_a_specific_reason(method: str, path: str, code: str, reason: str) -> None:
    """An error answer ends the session at once, naming the operation and the code."""
    pair = make_pair("psk", factory=FACTORY)
    pair.overrides[(method, path)] = (code, b"", None)
    pair.run()
    assert pair.session.outcome == "failed"
    assert pair.session.state is State.FAILED
    assert pair.session.reason == reason
    assert (pair.sent[-1].method, pair.sent[-1].path) == (method, path)
    assert pair.session.history[-1].code == code
    assert pair.session.get_timer() is None


def test_finish_rejected_by_the_client_itself() -> None:
    """The simulated client answers 4.06 to a Finish when no usable server account exists."""
    client = SimLwm2mClient()
    assert client.handle("POST", "/bs") == ("4.06", b"", None)


def test_operation_timeout_fails_naming_the_operation() -> None:
    """No answer within 30 s to one operation fails the session, 30 s after it was sent."""
    pair = make_pair("psk", factory=FACTORY)
    pair.drop = lambda op: op.path == "/1/0"
    pair.run()
    assert pair.session.reason == "no answer to Delete /1/0 within 30 s"
    sent_at = START + 2 * pair.latency
    assert pair.clock == pytest.approx(sent_at + 30)
    assert pair.session.history[-1].code is None


def test_session_timeout_covers_slow_clients() -> None:
    """Answers that each come in time still fail once the whole session exceeds its budget."""
    pair = make_pair("psk", factory=FACTORY, operation_timeout=30.0, session_timeout=120.0)
    pair.latency = 25.0
    pair.run()
    assert pair.session.reason == "bootstrap not finished within 120 s (waiting for Write /1/1)"
    assert pair.clock == pytest.approx(START + 125)  # the late answer was ignored


def test_timer_tracks_the_operation_in_flight() -> None:
    """get_timer() is the session deadline, or the earlier operation deadline while one is in flight."""
    pair = make_pair("nosec", operation_timeout=10.0, session_timeout=60.0)
    assert pair.session.get_timer() == START + 60
    op = pair.session.next_operation(now=START + 5)
    assert op is not None
    assert pair.session.get_timer() == START + 15
    pair.session.handle_timer(START + 14.9)
    assert pair.session.outcome is None


def test_cancel_supersedes_the_session() -> None:
    """cancel() fails the session as superseded; a late answer is ignored and nothing more is sent."""
    pair = make_pair("nosec")
    op = pair.session.next_operation()
    assert op is not None
    pair.session.cancel()
    assert pair.session.outcome == "failed"
    assert "superseded" in (pair.session.reason or "")
    pair.session.handle_response(op.op_id, "2.05", b"</0/0>", 40, START + 1)
    assert pair.session.state is State.FAILED
    assert pair.session.next_operation() is None
    assert pair.session.get_timer() is None


def test_cancel_after_success_changes_nothing() -> None:
    """A new Bootstrap-Request after a finished session leaves its outcome alone."""
    pair = make_pair("nosec")
    pair.run()
    pair.session.cancel()
    pair.session.handle_timer(START + 10_000)
    assert pair.session.outcome == "success"


def test_bootstrap_account_elsewhere_is_never_touched() -> None:
    """With the account at /0/1, the session deletes and writes around it (Security goes to /0/2)."""
    client = SimLwm2mClient(
        bootstrap_iid=1,
        factory={0: {0: {0: "coap://old", 1: False, 2: 3, 10: 7}}, 1: {0: {0: 7, 1: 60}}},
    )
    before = bootstrap_account(client, 1)
    pair = make_pair("psk", client=client)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert pair.session.bootstrap_account_iid == 1
    assert "/0/1" not in pair.paths()
    assert pair.paths("DELETE") == ["/0/0", "/1/0"]
    assert pair.paths("PUT") == ["/0/2", "/1/1"]
    assert bootstrap_account(client, 1) == before


def test_fallback_writes_avoid_the_assumed_account() -> None:
    """Without Discover the account's instance is unknown: the Writes avoid fallback_bootstrap_iid."""
    client = SimLwm2mClient(bootstrap_iid=1, discover_code="4.05")
    before = bootstrap_account(client, 1)
    pair = make_pair("nosec", client=client, fallback_bootstrap_iid=1)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert pair.paths("PUT") == ["/0/2", "/1/1"]
    assert bootstrap_account(client, 1) == before


def test_one_operation_in_flight() -> None:
    """next_operation() gives nothing more until the operation in flight is answered."""
    pair = make_pair("nosec")
    first = pair.session.next_operation()
    assert first is not None and first.kind is OperationKind.DISCOVER
    assert pair.session.next_operation() is None


def test_adapter_misuse_raises() -> None:
    """An unknown operation id or a malformed code is a SessionError (an adapter bug)."""
    pair = make_pair("nosec")
    op = pair.session.next_operation()
    assert op is not None
    with pytest.raises(SessionError):
        pair.session.handle_response(op.op_id + 1, "2.05", b"", 40, START)
    with pytest.raises(SessionError):
        pair.session.handle_response(op.op_id, "205", b"", 40, START)


@pytest.mark.parametrize(
    ("payload", "fmt", "reason"),
    [
        (b"</0/0", 40, "not valid link format"),
        (b"</0/0>", 0, "Content-Format 0, expected 40"),
    ],
)
def test_unusable_discover_answer_fails(payload: bytes, fmt: int, reason: str) -> None:
    """A Discover answer that is not link format fails the session rather than guessing."""
    pair = make_pair("nosec")
    pair.overrides[("GET", "/")] = ("2.05", payload, fmt)
    pair.run()
    assert pair.session.outcome == "failed"
    assert reason in (pair.session.reason or "")


def test_invalid_configuration_is_refused_up_front() -> None:
    """Constructing a session with a bad configuration raises BadRequest (answer the request 4.00)."""
    with pytest.raises(BadRequest):
        BootstrapSession(
            endpoint="dev-1",
            lwm2m_version="1.1",
            preferred_format=112,
            config=config_for("psk"),
            credentials=None,
            now=START,
        )


@pytest.mark.parametrize(
    ("version", "factory", "reads", "acl"),
    [
        ("1.1", ACL, ["/2"], ACL[2]),
        ("1.1", None, ["/2"], None),
        ("1.0", ACL, [], None),
    ],
)
def test_optional_read_of_access_control(
    version: str, factory: dict[int, dict[int, dict[int, object]]] | None, reads: list[str], acl: object
) -> None:
    """With the flag, 1.1+ clients get a Bootstrap-Read of /2 (4.04 tolerated); 1.0 clients never."""
    client = SimLwm2mClient(lwm2m_version=version, factory=factory)  # type: ignore[arg-type]
    pct = None if version == "1.0" else 112
    pair = make_pair("nosec", pct=pct, client=client, read_access_control=True)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert [op.path for op in pair.sent if op.kind is OperationKind.READ] == reads
    assert pair.session.access_control == acl
    assert 2 in client.objects or factory is None  # Access Control is never deleted


def test_no_read_without_the_flag() -> None:
    """Bootstrap-Read is off by default."""
    pair = make_pair("nosec", factory=ACL)
    pair.run()
    assert pair.paths("GET") == ["/"]


def test_transition_table_fails_from_every_active_state() -> None:
    """Every active state has a failure path for errors, timeouts and cancels; final states have none."""
    active = [s for s in State if s not in (State.SUCCEEDED, State.FAILED)]
    for state in active:
        for event in (Event.REJECTED, Event.TIMED_OUT, Event.CANCELLED):
            assert TRANSITIONS[(state, event)] is State.FAILED
    assert not [key for key in TRANSITIONS if key[0] in (State.SUCCEEDED, State.FAILED)]


def test_request_version() -> None:
    """A Bootstrap-Request without pct is LwM2M 1.0, with pct at least 1.1."""
    assert (request_version(None), request_version(112)) == ("1.0", "1.1")


# -- Bootstrap-Pack ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fmt", [int(f) for f in PACK_FORMATS])
def test_pack_gives_the_same_end_state_as_the_session(mode: SecurityModeName, fmt: int) -> None:
    """Applying the pack leaves the client exactly as the Discover/Delete/Write/Finish sequence does."""
    pair = make_pair(mode, pct=fmt, client=SimLwm2mClient(lwm2m_version="1.2", factory=FACTORY))  # type: ignore[arg-type]
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason

    packed = SimLwm2mClient(lwm2m_version="1.2", factory=FACTORY)  # type: ignore[arg-type]
    packed.apply_pack(build_pack(config_for(mode), credentials_for(mode), fmt), fmt)
    assert packed.finished
    assert packed.snapshot() == pair.client.snapshot()


def test_pack_defaults_to_senml_cbor() -> None:
    """A Bootstrap-Pack-Request without Accept gets SenML CBOR."""
    config = config_for("nosec")
    assert build_pack(config, None, None) == build_pack(config, None, 112)


@pytest.mark.parametrize("accept", [0, 40, 42, 60, 11542, 11543])
def test_pack_refuses_other_formats(accept: int) -> None:
    """Other Accept values get NotAcceptable (4.06)."""
    with pytest.raises(NotAcceptable) as caught:
        build_pack(config_for("nosec"), None, accept)
    assert caught.value.coap_code == "4.06"


def test_inconsistent_pack_is_refused_and_changes_nothing() -> None:
    """A pack without a matching Server instance is refused with 4.06 and the store is untouched."""
    client = SimLwm2mClient(factory=FACTORY)  # type: ignore[arg-type]
    before = client.snapshot()
    security_only = encode(110, Path(0), {5: {0: "coap://x", 1: False, 2: 3, 10: 9}})
    with pytest.raises(ClientError) as caught:
        client.apply_pack(security_only, 110)
    assert caught.value.code == "4.06"
    assert client.snapshot() == before


# -- the simulated client on its own -------------------------------------------------------------


def test_sim_discover_lists_accounts_and_its_version() -> None:
    """Discover shows lwm2m version, ssid and uri for server accounts, nothing on the bootstrap account."""
    client = SimLwm2mClient(factory=FACTORY)  # type: ignore[arg-type]
    code, payload, fmt = client.handle("GET", "/", accept=40)
    assert (code, fmt) == ("2.05", 40)
    assert payload == b'lwm2m="1.1",</0/0>,</0/2>;ssid=7;uri="coaps://old.example",</1/0>;ssid=7'


@pytest.mark.parametrize(
    ("kwargs", "request_", "code"),
    [
        ({}, ("DELETE", "/0/0"), "4.00"),
        ({}, ("DELETE", "/0/9"), "4.04"),
        ({"delete_missing_code": "2.02"}, ("DELETE", "/0/9"), "2.02"),
        ({"lwm2m_version": "1.0"}, ("GET", "/1"), "4.05"),
        ({}, ("FETCH", "/"), "4.05"),
        ({}, ("POST", "/bs?x"), "4.05"),
        ({}, ("PUT", "/0/x"), "4.04"),
    ],
)
def test_sim_refusals(kwargs: dict[str, object], request_: tuple[str, str], code: str) -> None:
    """The simulated client refuses what real clients refuse, with their codes."""
    client = SimLwm2mClient(**kwargs)  # type: ignore[arg-type]
    assert client.handle(*request_)[0] == code


def test_sim_write_checks_its_formats() -> None:
    """A Write in a format the client lacks is 4.15; a malformed payload 4.00."""
    client = SimLwm2mClient(formats=[TLV])
    payload = encode(112, Path(1, 1), {1: {0: 5}})
    assert client.handle("PUT", "/1/1", payload, 112)[0] == "4.15"
    assert client.handle("PUT", "/1/1", b"\xff", TLV)[0] == "4.00"
    assert client.handle("PUT", "/1/1", encode(TLV, Path(1, 1), {1: {0: 5}}), None)[0] == "2.04"
    assert client.objects[1][1] == {0: 5}


def test_sim_read_encodes_in_the_accepted_format() -> None:
    """Bootstrap-Read answers in the Accept format."""
    client = SimLwm2mClient(factory=ACL)  # type: ignore[arg-type]
    code, payload, fmt = client.handle("GET", "/2", accept=110)
    assert (code, fmt) == ("2.05", 110)
    assert decode(110, payload, "/2") == ACL[2]


# -- properties --------------------------------------------------------------------------------------

_iids = st.frozensets(st.integers(0, 6), max_size=4)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bs_iid=st.integers(0, 3),
    security_iids=_iids,
    server_iids=_iids,
    delete_missing_code=st.sampled_from(["4.04", "2.02"]),
    discover_code=st.sampled_from([None, None, "4.05"]),
    pct=st.sampled_from([110, 112, 11544]),
    mode=st.sampled_from(MODES),
)
def test_any_starting_store_ends_with_exactly_our_account(
    bs_iid: int,
    security_iids: frozenset[int],
    server_iids: frozenset[int],
    delete_missing_code: str,
    discover_code: str | None,
    pct: int,
    mode: SecurityModeName,
) -> None:
    """Whatever the client held, it ends with its bootstrap account untouched plus exactly one new account."""
    factory = {
        0: {iid: {0: f"coap://old{iid}", 1: False, 2: 3, 10: 200 + iid} for iid in security_iids - {bs_iid}},
        1: {iid: {0: 200 + iid, 1: 60} for iid in server_iids},
    }
    if discover_code is not None:
        bs_iid = 0  # without Discover the account's instance is assumed (fallback_bootstrap_iid)
    client = SimLwm2mClient(
        bootstrap_iid=bs_iid,
        bootstrap_server_uri=BS_URI,
        factory=factory,  # type: ignore[arg-type]
        delete_missing_code=delete_missing_code,
        discover_code=discover_code,
    )
    before = bootstrap_account(client, bs_iid)
    pair = make_pair(mode, pct=pct, client=client)
    pair.run()

    assert pair.session.outcome == "success", pair.session.reason
    bs_path = f"/0/{bs_iid}"
    assert bs_path not in pair.paths()
    assert client.bootstrap_account_iids() == [bs_iid]
    assert bootstrap_account(client, bs_iid) == before
    assert len(client.objects[0]) == 2
    assert len(client.objects[1]) == 1
    account = client.server_account()
    assert account is not None
    assert (account.ssid, account.security_mode) == (101, SecurityMode(MODE_NUMBER[mode]))


def test_simulated_clients_own_what_they_decode() -> None:
    """The simulator remembers decoded payloads across devices; each device must still get its
    own copy, so one device changing its store cannot change another's (or the next decode)."""
    from bootstrap.lwm2m import encode
    from bootstrap.lwm2m.model import ContentFormat, Path

    # Access Control /2/0: resource 2 (ACL) has several instances, so it decodes to a nested dict.
    payload = encode(ContentFormat.SENML_CBOR, Path(2, 0), {0: {0: 1, 1: 0, 2: {101: 15}, 3: 101}})
    fmt = int(ContentFormat.SENML_CBOR)
    first, second = SimLwm2mClient(endpoint="a"), SimLwm2mClient(endpoint="b")
    for client in (first, second):
        code, _, _ = client.handle("PUT", "/2/0", payload, fmt)
        assert code == "2.04"
    first.objects[2][0][2][101] = 1  # type: ignore[index]
    assert second.objects[2][0][2] == {101: 15}
    third = SimLwm2mClient(endpoint="c")
    third.handle("PUT", "/2/0", payload, fmt)
    assert third.objects[2][0][2] == {101: 15}


# -- OSCORE ------------------------------------------------------------------------------------------


OSCORE = OscoreContext(master_secret=bytes(range(32)), sender_id=b"\x07", recipient_id=b"\x08")
# A factory account protected by an old OSCORE context, which must not survive the bootstrap.
OSCORE_FACTORY = {
    0: {2: {0: "coap://old.example", 1: False, 2: 3, 3: b"", 4: b"", 5: b"", 10: 7, 17: ObjLink(21, 0)}},
    1: {0: {0: 7, 1: 60, 6: True, 7: "U"}},
    21: {0: {0: b"old secret 16 bytes!", 1: b"\x01", 2: b"\x02"}},
}


@pytest.mark.parametrize("fmt", [110, 112, 11544])
def test_oscore_context_replaces_the_old_one_by_session_and_by_pack(fmt: int) -> None:
    """nosec + oscore: the old /21 instance is deleted, the new context written and linked; the
    pack leaves the client in the same state."""
    config = config_for("nosec", oscore=True)
    credentials = DeviceCredentials(oscore=OSCORE)
    client = SimLwm2mClient(lwm2m_version="1.2", factory=OSCORE_FACTORY)  # type: ignore[arg-type]
    session = BootstrapSession(
        endpoint=client.endpoint,
        lwm2m_version=request_version(fmt),
        preferred_format=fmt,
        config=config,
        credentials=credentials,
        now=START,
    )
    pair = DevicePair(session=session, client=client)
    pair.run()
    assert pair.session.outcome == "success", pair.session.reason
    assert [(op.method, op.path) for op in pair.sent] == [
        ("GET", "/"),
        ("DELETE", "/0/2"),
        ("DELETE", "/1/0"),
        ("DELETE", "/21/0"),
        ("PUT", "/0/1"),
        ("PUT", "/1/1"),
        ("PUT", "/21/1"),
        ("POST", "/bs"),
    ]
    account = client.server_account()
    assert account is not None and account.security_mode == 3 and account.uri.startswith("coap://")
    assert account.oscore is not None
    assert (account.oscore[0], account.oscore[1], account.oscore[2]) == (bytes(range(32)), b"\x07", b"\x08")
    assert sorted(client.objects[21]) == [1]

    packed = SimLwm2mClient(lwm2m_version="1.2", factory=OSCORE_FACTORY)  # type: ignore[arg-type]
    packed.apply_pack(build_pack(config, credentials, fmt), fmt)
    assert packed.snapshot() == client.snapshot()


def test_oscore_is_refused_for_legacy_clients() -> None:
    """A 1.0 client has no OSCORE object: the session fails before any Write."""
    client = SimLwm2mClient(lwm2m_version="1.0")
    session = BootstrapSession(
        endpoint=client.endpoint,
        lwm2m_version=request_version(None),
        preferred_format=None,
        config=config_for("nosec", oscore=True),
        credentials=DeviceCredentials(oscore=OSCORE),
        now=START,
    )
    pair = DevicePair(session=session, client=client)
    pair.run()
    assert pair.session.outcome == "failed"
    assert "1.1" in (pair.session.reason or "")
    assert not [op for op in pair.sent if op.method == "PUT"]


def test_simulated_device_refuses_an_unusable_oscore_context() -> None:
    """The simulator reports an OSCORE link to nothing, or a context RFC 8613 rules out, instead of
    counting the device as bootstrapped."""
    from device_sim.journey import JourneyError, _check_account
    from device_sim.lwm2m_client import ServerAccount

    def account(oscore: dict[int, object]) -> ServerAccount:
        return ServerAccount(
            uri="coap://lwm2m.example", security_mode=3, ssid=1, server_certificate_der=b"",
            public_key_or_identity=b"", secret_key=b"", certificate_usage=None, lifetime=60, binding="U",
            security_iid=1, server_iid=1, oscore=oscore,
        )  # fmt: skip

    good = {0: bytes(16), 1: b"\x01", 2: b"\x02"}
    assert _check_account(account(good)).oscore == good
    for bad, reason in (
        ({}, "not written"),
        ({**good, 2: b"\x01"}, "must differ"),
        ({**good, 1: bytes(8)}, "at most 7 bytes"),
        ({**good, 0: bytes(15)}, "at least 16 bytes"),
        ({1: b"\x01", 2: b"\x02"}, "missing"),
    ):
        with pytest.raises(JourneyError, match=reason):
            _check_account(account(bad))
