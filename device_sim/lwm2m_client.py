"""The bootstrap side of a simulated LwM2M client, sans-I/O.

:class:`SimLwm2mClient` holds an object store with the client's Bootstrap-Server account and
answers what a bootstrap server sends it (Transport TS, "Bootstrap Interface") the way real
clients do: Discover, Read, Delete, Write and Finish through :meth:`SimLwm2mClient.handle`, and
a Bootstrap-Pack through :meth:`SimLwm2mClient.apply_pack`. The fleet and the tests put a CoAP
transport or an in-memory harness in front of it; afterwards :meth:`server_account` tells where
the device was sent.

Behaviour knobs mirror real clients (see the reference notes, "Observed behaviour of real
clients"): Wakaama answers 4.04 to deleting a missing instance, Anjay 2.02; a Write without
Content-Format is read as TLV; LwM2M 1.0 clients have no Bootstrap-Read.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import cbor2

from bootstrap.lwm2m import (
    SUPPORTED_FORMATS,
    CodecError,
    ContentFormat,
    DecodedInstance,
    DecodedInstances,
    Instances,
    ObjectId,
    ObjLink,
    Path,
    SecurityMode,
    SecurityResource,
    ServerResource,
    decode,
    encode,
)
from bootstrap.lwm2m.lwm2m_cbor import loads_cbor

__all__ = ["ClientError", "Response", "ServerAccount", "SimLwm2mClient"]

Response: TypeAlias = tuple[str, bytes, int | None]
"""``(response code, payload, Content-Format)``."""

_SENML_BN = {ContentFormat.SENML_JSON: "bn", ContentFormat.SENML_CBOR: -2}
_SENML_N = {ContentFormat.SENML_JSON: "n", ContentFormat.SENML_CBOR: 0}


class ClientError(Exception):
    """The client refuses something; ``code`` is the CoAP code it would answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code} {message}")
        self.code = code


@dataclass(frozen=True, kw_only=True)
class ServerAccount:
    """An LwM2M server account: a /0 instance and the /1 instance with the same Short Server ID."""

    uri: str
    """LwM2M Server URI (/0/x/0)."""
    security_mode: int
    """Security Mode (/0/x/2)."""
    ssid: int
    """Short Server ID."""
    server_certificate_der: bytes
    """Server Public Key (/0/x/4); empty when unused."""
    public_key_or_identity: bytes
    """Public Key or Identity (/0/x/3): client certificate or PSK identity."""
    secret_key: bytes
    """Secret Key (/0/x/5): private key or PSK."""
    certificate_usage: int | None
    """Certificate Usage (/0/x/15), if written."""
    lifetime: int | None
    """Lifetime (/1/x/1)."""
    binding: str | None
    """Binding (/1/x/7)."""
    security_iid: int
    """The /0 instance."""
    server_iid: int
    """The /1 instance."""
    oscore: Mapping[int, object] | None = None
    """The OSCORE instance (/21) that /0/x/17 links, if it links one; ``{}`` if it links a missing one."""


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else b""


class SimLwm2mClient:
    """A client's object store and its answers to bootstrap operations.

    Args:
        endpoint: Endpoint Client Name.
        lwm2m_version: The version it implements ("1.0", "1.1", "1.2").
        bootstrap_server_uri: URI of its Bootstrap-Server account.
        bootstrap_iid: Security instance holding that account.
        factory: Pre-existing instances (``object id -> instances``), e.g. a factory server account.
        delete_missing_code: Answer to deleting a missing instance: "4.04" (Wakaama) or "2.02" (Anjay).
        discover_code: Answer to every Discover when the client does not implement it (e.g. "4.05").
        formats: Content-Formats it reads and writes.
    """

    def __init__(
        self,
        *,
        endpoint: str = "sim-device",
        lwm2m_version: str = "1.1",
        bootstrap_server_uri: str = "coaps://bootstrap.example:5784",
        bootstrap_iid: int = 0,
        factory: Mapping[int, Instances] | None = None,
        delete_missing_code: str = "4.04",
        discover_code: str | None = None,
        formats: Collection[int] = SUPPORTED_FORMATS,
    ) -> None:
        self.endpoint = endpoint
        self.lwm2m_version = lwm2m_version
        self.delete_missing_code = delete_missing_code
        self.discover_code = discover_code
        self.formats = frozenset(int(f) for f in formats)
        #: ``object id -> instance id -> resource id -> value`` (multiple resources as dicts).
        self.objects: dict[int, dict[int, DecodedInstance]] = {0: {}, 1: {}}
        for object_id, instances in (factory or {}).items():
            for iid, instance in instances.items():
                self.objects.setdefault(int(object_id), {})[int(iid)] = _copy_instance(instance)
        account: dict[int, object] = {
            SecurityResource.SERVER_URI: bootstrap_server_uri,
            SecurityResource.BOOTSTRAP_SERVER: True,
            SecurityResource.SECURITY_MODE: int(SecurityMode.CERTIFICATE),
            SecurityResource.PUBLIC_KEY_OR_IDENTITY: b"",
            SecurityResource.SERVER_PUBLIC_KEY: b"",
            SecurityResource.SECRET_KEY: b"",
        }
        self.objects[ObjectId.SECURITY][bootstrap_iid] = _copy_instance(account)
        #: Set once a Bootstrap-Finish or a Bootstrap-Pack was accepted.
        self.finished = False
        #: Every request handled: ``(method, path, response code)``.
        self.log: list[tuple[str, str, str]] = []
        self._methods: dict[str, Callable[[str, bytes, int | None, int | None], Response]] = {
            "GET": self._get,
            "PUT": self._put,
            "DELETE": self._delete,
            "POST": self._post,
        }

    # -- the bootstrap interface ----------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        payload: bytes = b"",
        content_format: int | None = None,
        accept: int | None = None,
    ) -> Response:
        """Answer one request from the bootstrap server.

        Args:
            method: CoAP method name.
            path: Uri-Path as text, e.g. ``"/0/1"`` or ``"/bs"``.
            payload: Request payload.
            content_format: Content-Format option, if any.
            accept: Accept option, if any.

        Returns:
            ``(code, payload, content format)``.
        """
        handler = self._methods.get(method)
        if handler is None:
            response: Response = ("4.05", b"", None)
        else:
            try:
                response = handler(path, bytes(payload), content_format, accept)
            except ClientError as exc:
                response = (exc.code, b"", None)
            except CodecError:
                response = ("4.00", b"", None)
        self.log.append((method, path, response[0]))
        return response

    def apply_pack(self, payload: bytes, fmt: int) -> None:
        """Apply a Bootstrap-Pack (the 2.05 answer to ``GET /bspack``).

        As Anjay does: delete the instances of every object in the pack except the
        Bootstrap-Server account, write the pack, then check the configuration as Finish would.
        Nothing changes if the pack is refused.

        Args:
            payload: The pack.
            fmt: Its Content-Format (112, 110 or 11544).

        Raises:
            ClientError: "4.00" for a malformed pack, "4.15" for a format it cannot read,
                "4.06" if the result has no usable server account.
        """
        try:
            pack = _shared_copy(_split_pack(payload, fmt))
        except CodecError as exc:
            raise ClientError("4.00", f"malformed pack: {exc}") from None
        saved = copy.deepcopy(self.objects)
        for object_id, instances in pack.items():
            self._delete_object(object_id)
            for iid, instance in instances.items():
                self.objects.setdefault(object_id, {}).setdefault(iid, {}).update(instance)
        if not self._account_pairs():
            self.objects = saved
            raise ClientError("4.06", "no usable LwM2M server account")
        self.finished = True

    # -- what the fleet reads afterwards ---------------------------------------------------------

    def bootstrap_account_iids(self) -> list[int]:
        """Security instances holding a Bootstrap-Server account (/0/x/1 true)."""
        return sorted(
            iid
            for iid, inst in self.objects.get(ObjectId.SECURITY, {}).items()
            if inst.get(SecurityResource.BOOTSTRAP_SERVER) is True
        )

    def server_account(self) -> ServerAccount | None:
        """The first usable LwM2M server account, or None."""
        pairs = self._account_pairs()
        if not pairs:
            return None
        security_iid, server_iid = pairs[0]
        sec = self.objects[ObjectId.SECURITY][security_iid]
        srv = self.objects[ObjectId.SERVER][server_iid]
        binding = srv.get(ServerResource.BINDING)
        link = sec.get(SecurityResource.OSCORE_SECURITY_MODE)
        oscore = None
        if isinstance(link, ObjLink) and link.object_id == ObjectId.OSCORE:
            oscore = self.objects.get(ObjectId.OSCORE, {}).get(link.instance_id, {})
        return ServerAccount(
            uri=str(sec.get(SecurityResource.SERVER_URI, "")),
            security_mode=_int(sec.get(SecurityResource.SECURITY_MODE)) or 0,
            ssid=_int(sec.get(SecurityResource.SHORT_SERVER_ID)) or 0,
            server_certificate_der=_bytes(sec.get(SecurityResource.SERVER_PUBLIC_KEY)),
            public_key_or_identity=_bytes(sec.get(SecurityResource.PUBLIC_KEY_OR_IDENTITY)),
            secret_key=_bytes(sec.get(SecurityResource.SECRET_KEY)),
            certificate_usage=_int(sec.get(SecurityResource.CERTIFICATE_USAGE)),
            lifetime=_int(srv.get(ServerResource.LIFETIME)),
            binding=binding if isinstance(binding, str) else None,
            security_iid=security_iid,
            server_iid=server_iid,
            oscore=oscore,
        )

    def snapshot(self) -> dict[int, dict[int, DecodedInstance]]:
        """A deep copy of the object store, without empty objects."""
        return {oid: copy.deepcopy(insts) for oid, insts in self.objects.items() if insts}

    # -- operations ------------------------------------------------------------------------------

    def _get(self, path: str, payload: bytes, content_format: int | None, accept: int | None) -> Response:
        target = _parse(path)
        if accept == ContentFormat.LINK_FORMAT:
            if self.discover_code is not None:
                return (self.discover_code, b"", None)
            return ("2.05", self._discover(target).encode("utf-8"), int(ContentFormat.LINK_FORMAT))
        # Bootstrap-Read: new in LwM2M 1.1, on an object only.
        if self.lwm2m_version.startswith("1.0"):
            return ("4.05", b"", None)
        if target is None or target.depth != 1:
            return ("4.00", b"", None)
        fmt = int(ContentFormat.TLV) if accept is None else accept
        if fmt not in self.formats:
            return ("4.06", b"", None)
        instances = self.objects.get(target.object_id)
        if not instances:
            return ("4.04", b"", None)
        return ("2.05", encode(fmt, target, instances), fmt)

    def _discover(self, target: Path | None) -> str:
        # Core TS, Bootstrap-Discover: instances with "ssid" for server accounts (and "uri"
        # for /0 in 1.1+); the Bootstrap-Server account carries neither. 1.1+ states its version.
        items: list[str] = []
        modern = not self.lwm2m_version.startswith("1.0")
        if target is None and modern:
            items.append(f'lwm2m="{self.lwm2m_version}"')
        for object_id in sorted(self.objects):
            if target is not None and target.object_id != object_id:
                continue
            instances = self.objects[object_id]
            if not instances:
                items.append(f"</{object_id}>")
            for iid in sorted(instances):
                inst = instances[iid]
                link = f"</{object_id}/{iid}>"
                if object_id == ObjectId.SECURITY and inst.get(SecurityResource.BOOTSTRAP_SERVER) is not True:
                    ssid = _int(inst.get(SecurityResource.SHORT_SERVER_ID))
                    if ssid is not None:
                        link += f";ssid={ssid}"
                    if modern and isinstance(inst.get(SecurityResource.SERVER_URI), str):
                        link += f';uri="{inst[SecurityResource.SERVER_URI]}"'
                elif (
                    object_id == ObjectId.SERVER
                    and _int(inst.get(ServerResource.SHORT_SERVER_ID)) is not None
                ):
                    link += f";ssid={inst[ServerResource.SHORT_SERVER_ID]}"
                items.append(link)
        return ",".join(items)

    def _put(self, path: str, payload: bytes, content_format: int | None, accept: int | None) -> Response:
        target = _parse(path)
        if target is None or target.depth > 3:
            return ("4.00", b"", None)
        fmt = int(ContentFormat.TLV) if content_format is None else content_format  # as Wakaama does
        if fmt not in self.formats:
            return ("4.15", b"", None)
        decoded = _decoded(fmt, payload, target)
        # Transport TS: a Bootstrap-Write applies "regardless of an existence of the targeting
        # Object Instance(s)"; resources in the payload replace those in the store.
        for iid, instance in decoded.items():
            self.objects.setdefault(target.object_id, {}).setdefault(iid, {}).update(instance)
        return ("2.04", b"", None)

    def _delete(self, path: str, payload: bytes, content_format: int | None, accept: int | None) -> Response:
        target = _parse(path)
        if target is None:  # Delete "/": everything "except LwM2M Bootstrap-Server Account"
            for object_id in list(self.objects):
                self._delete_object(object_id)
            return ("2.02", b"", None)
        if target.depth == 1:
            self._delete_object(target.object_id)
            return ("2.02", b"", None)
        if target.depth != 2 or target.instance_id is None:
            return ("4.00", b"", None)
        instances = self.objects.get(target.object_id, {})
        if target.instance_id not in instances:
            return (self.delete_missing_code, b"", None)
        if self._is_bootstrap_account(target.object_id, target.instance_id):
            return ("4.00", b"", None)
        del instances[target.instance_id]
        return ("2.02", b"", None)

    def _post(self, path: str, payload: bytes, content_format: int | None, accept: int | None) -> Response:
        if path != "/bs":
            return ("4.05", b"", None)
        if payload:
            return ("4.00", b"", None)
        # Bootstrap-Finish: 4.06 "Inconsistent loaded configuration" without a server account
        # (Wakaama, bootstrap_handleFinish).
        if not self._account_pairs():
            return ("4.06", b"", None)
        self.finished = True
        return ("2.04", b"", None)

    # -- helpers ---------------------------------------------------------------------------------

    def _is_bootstrap_account(self, object_id: int, iid: int) -> bool:
        if object_id != ObjectId.SECURITY:
            return False
        return self.objects[ObjectId.SECURITY][iid].get(SecurityResource.BOOTSTRAP_SERVER) is True

    def _delete_object(self, object_id: int) -> None:
        instances = self.objects.get(object_id, {})
        for iid in list(instances):
            if not self._is_bootstrap_account(object_id, iid):
                del instances[iid]

    def _account_pairs(self) -> list[tuple[int, int]]:
        security = self.objects.get(ObjectId.SECURITY, {})
        server = self.objects.get(ObjectId.SERVER, {})
        pairs = []
        for sec_iid in sorted(security):
            sec = security[sec_iid]
            ssid = _int(sec.get(SecurityResource.SHORT_SERVER_ID))
            if sec.get(SecurityResource.BOOTSTRAP_SERVER) is True or ssid is None:
                continue
            if not isinstance(sec.get(SecurityResource.SERVER_URI), str):
                continue
            for srv_iid in sorted(server):
                if _int(server[srv_iid].get(ServerResource.SHORT_SERVER_ID)) == ssid:
                    pairs.append((sec_iid, srv_iid))
                    break
        return pairs


def _parse(path: str) -> Path | None:
    """None for the root "/", else the LwM2M path."""
    if path in ("", "/"):
        return None
    try:
        return Path.parse(path)
    except CodecError:
        raise ClientError("4.04", f"no such path {path!r}") from None


def _copy_instance(instance: Mapping[int, Any]) -> DecodedInstance:
    out: DecodedInstance = {}
    for rid, value in instance.items():
        out[int(rid)] = {int(k): v for k, v in value.items()} if isinstance(value, Mapping) else value
    return out


def _decoded(fmt: int, payload: bytes, path: Path) -> DecodedInstances:
    """:func:`decode`, remembered for payloads seen before: a fleet provisioned from one
    configuration receives the same Writes over and over, and the simulator should not spend
    more CPU per device than the server it is measuring. The result is a copy the caller owns."""
    return {iid: _copy_instance(instance) for iid, instance in _decode_once(fmt, payload, path).items()}


@functools.lru_cache(maxsize=512)
def _decode_once(fmt: int, payload: bytes, path: Path) -> DecodedInstances:
    return decode(fmt, payload, path)  # shared between callers: never modified


def _shared_copy(pack: dict[int, DecodedInstances]) -> dict[int, DecodedInstances]:
    return {oid: {iid: _copy_instance(i) for iid, i in instances.items()} for oid, instances in pack.items()}


@functools.lru_cache(maxsize=256)
def _split_pack(payload: bytes, fmt: int) -> dict[int, DecodedInstances]:
    """Decode a multi-object pack by splitting it into one payload per object.

    The codecs decode payloads for one request path; a pack spans /0 and /1, so records (or
    top-level map keys) are grouped by object and each group is decoded on its own. SenML
    records get an absolute ``bn`` each; a ``bv``/``bt`` base value would not survive the
    split, which our server never sends. Remembered per payload (see :func:`_decoded`): callers
    copy the result before changing anything.
    """
    if fmt == ContentFormat.LWM2M_CBOR:
        document = loads_cbor(payload)
        if not isinstance(document, dict):
            raise CodecError("LwM2M CBOR pack must be a map")
        maps: dict[int, dict[Any, Any]] = {}
        for key, value in document.items():
            first = key[0] if isinstance(key, tuple) and key else key
            if not isinstance(first, int) or isinstance(first, bool):
                raise CodecError(f"LwM2M CBOR key {key!r} is not a path")
            maps.setdefault(first, {})[key] = value
        return {oid: decode(fmt, cbor2.dumps(part), Path(oid)) for oid, part in maps.items()}
    if fmt == ContentFormat.SENML_JSON:
        try:
            records: Any = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CodecError(f"malformed SenML JSON: {exc}") from None
    elif fmt == ContentFormat.SENML_CBOR:
        records = loads_cbor(payload)
    else:
        raise ClientError("4.15", f"cannot read a pack in Content-Format {fmt}")
    content_format = ContentFormat(fmt)
    bn_key, n_key = _SENML_BN[content_format], _SENML_N[content_format]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise CodecError("SenML pack must be an array of records")
    groups: dict[int, list[dict[Any, Any]]] = {}
    base = ""
    for record in records:
        bn = record.get(bn_key, base)
        name = record.get(n_key, "")
        if not isinstance(bn, str) or not isinstance(name, str):
            raise CodecError("SenML bn and n must be strings")
        base = bn
        path = Path.parse(base + name)
        rebased = {k: v for k, v in record.items() if k not in (bn_key, n_key)}
        rebased[bn_key] = str(path)
        groups.setdefault(path.object_id, []).append(rebased)
    dump: Callable[[Any], bytes] = (
        (lambda doc: json.dumps(doc).encode("utf-8")) if fmt == ContentFormat.SENML_JSON else cbor2.dumps
    )
    return {oid: decode(fmt, dump(group), Path(oid)) for oid, group in groups.items()}
