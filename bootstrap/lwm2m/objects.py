"""Object definition tables for the objects a bootstrap server writes.

Resource tables follow the OMA LwM2M registry (``0.xml`` v1.2, ``1.xml`` v1.2, ``2.xml``,
``21.xml`` v2.0).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from .model import (
    ObjectDef,
    ObjectId,
    OscoreResource,
    ResourceDef,
    ResourceType,
    SecurityResource,
    ServerResource,
)

__all__ = ["ACCESS_CONTROL", "OBJECTS", "OSCORE", "SECURITY", "SERVER", "resource_def"]


def _object(object_id: int, name: str, resources: Iterable[ResourceDef], *, multiple: bool) -> ObjectDef:
    return ObjectDef(object_id, name, MappingProxyType({r.id: r for r in resources}), multiple)


_T = ResourceType
_S = SecurityResource
_V = ServerResource
_O = OscoreResource

SECURITY = _object(
    ObjectId.SECURITY,
    "LwM2M Security",
    [
        ResourceDef(_S.SERVER_URI, "LwM2M Server URI", _T.STRING),
        ResourceDef(_S.BOOTSTRAP_SERVER, "Bootstrap-Server", _T.BOOLEAN),
        ResourceDef(_S.SECURITY_MODE, "Security Mode", _T.INTEGER),
        ResourceDef(_S.PUBLIC_KEY_OR_IDENTITY, "Public Key or Identity", _T.OPAQUE),
        ResourceDef(_S.SERVER_PUBLIC_KEY, "Server Public Key", _T.OPAQUE),
        ResourceDef(_S.SECRET_KEY, "Secret Key", _T.OPAQUE),
        ResourceDef(_S.SMS_SECURITY_MODE, "SMS Security Mode", _T.INTEGER),
        ResourceDef(_S.SMS_BINDING_KEY_PARAMETERS, "SMS Binding Key Parameters", _T.OPAQUE),
        ResourceDef(_S.SMS_BINDING_SECRET_KEYS, "SMS Binding Secret Key(s)", _T.OPAQUE),
        ResourceDef(_S.SERVER_SMS_NUMBER, "LwM2M Server SMS Number", _T.STRING),
        ResourceDef(_S.SHORT_SERVER_ID, "Short Server ID", _T.INTEGER),
        ResourceDef(_S.CLIENT_HOLD_OFF_TIME, "Client Hold Off Time", _T.INTEGER),
        ResourceDef(_S.BOOTSTRAP_SERVER_ACCOUNT_TIMEOUT, "Bootstrap-Server Account Timeout", _T.INTEGER),
        ResourceDef(_S.MATCHING_TYPE, "Matching Type", _T.UNSIGNED),
        ResourceDef(_S.SNI, "SNI", _T.STRING),
        ResourceDef(_S.CERTIFICATE_USAGE, "Certificate Usage", _T.UNSIGNED),
        ResourceDef(_S.CIPHERSUITE, "DTLS/TLS Ciphersuite", _T.UNSIGNED, multiple=True),
        ResourceDef(_S.OSCORE_SECURITY_MODE, "OSCORE Security Mode", _T.OBJLNK),
        ResourceDef(_S.GROUPS_TO_USE, "Groups To Use by Client", _T.UNSIGNED, multiple=True),
        ResourceDef(
            _S.SIGNATURE_ALGORITHMS_SUPPORTED,
            "Signature Algorithms Supported by Server",
            _T.UNSIGNED,
            multiple=True,
        ),
        ResourceDef(
            _S.SIGNATURE_ALGORITHMS_TO_USE,
            "Signature Algorithms To Use by Client",
            _T.UNSIGNED,
            multiple=True,
        ),
        ResourceDef(
            _S.SIGNATURE_ALGORITHM_CERTS_SUPPORTED,
            "Signature Algorithm Certs Supported by Server",
            _T.UNSIGNED,
            multiple=True,
        ),
        ResourceDef(_S.TLS13_FEATURES_TO_USE, "TLS 1.3 Features To Use by Client", _T.UNSIGNED),
        ResourceDef(_S.TLS_EXTENSIONS_SUPPORTED, "TLS Extensions Supported by Server", _T.UNSIGNED),
        ResourceDef(_S.TLS_EXTENSIONS_TO_USE, "TLS Extensions To Use by Client", _T.UNSIGNED),
        ResourceDef(_S.SECONDARY_SERVER_URI, "Secondary LwM2M Server URI", _T.STRING, multiple=True),
        ResourceDef(_S.MQTT_SERVER, "MQTT Server", _T.OBJLNK),
        ResourceDef(_S.COSE_SECURITY, "LwM2M COSE Security", _T.OBJLNK, multiple=True),
        ResourceDef(_S.RDS_DESTINATION_PORT, "RDS Destination Port", _T.INTEGER),
        ResourceDef(_S.RDS_SOURCE_PORT, "RDS Source Port", _T.INTEGER),
        ResourceDef(_S.RDS_APPLICATION_ID, "RDS Application ID", _T.STRING),
    ],
    multiple=True,
)

SERVER = _object(
    ObjectId.SERVER,
    "LwM2M Server",
    [
        ResourceDef(_V.SHORT_SERVER_ID, "Short Server ID", _T.INTEGER),
        ResourceDef(_V.LIFETIME, "Lifetime", _T.INTEGER),
        ResourceDef(_V.DEFAULT_PMIN, "Default Minimum Period", _T.INTEGER),
        ResourceDef(_V.DEFAULT_PMAX, "Default Maximum Period", _T.INTEGER),
        ResourceDef(_V.DISABLE, "Disable", _T.NONE),
        ResourceDef(_V.DISABLE_TIMEOUT, "Disable Timeout", _T.INTEGER),
        ResourceDef(_V.NOTIFICATION_STORING, "Notification Storing When Disabled or Offline", _T.BOOLEAN),
        ResourceDef(_V.BINDING, "Binding", _T.STRING),
        ResourceDef(_V.REGISTRATION_UPDATE_TRIGGER, "Registration Update Trigger", _T.NONE),
        ResourceDef(_V.BOOTSTRAP_REQUEST_TRIGGER, "Bootstrap-Request Trigger", _T.NONE),
        ResourceDef(_V.APN_LINK, "APN Link", _T.OBJLNK),
        ResourceDef(_V.TLS_DTLS_ALERT_CODE, "TLS-DTLS Alert Code", _T.UNSIGNED),
        ResourceDef(_V.LAST_BOOTSTRAPPED, "Last Bootstrapped", _T.TIME),
        ResourceDef(_V.REGISTRATION_PRIORITY_ORDER, "Registration Priority Order", _T.UNSIGNED),
        ResourceDef(_V.INITIAL_REGISTRATION_DELAY, "Initial Registration Delay Timer", _T.UNSIGNED),
        ResourceDef(_V.REGISTRATION_FAILURE_BLOCK, "Registration Failure Block", _T.BOOLEAN),
        ResourceDef(_V.BOOTSTRAP_ON_REGISTRATION_FAILURE, "Bootstrap on Registration Failure", _T.BOOLEAN),
        ResourceDef(_V.COMMUNICATION_RETRY_COUNT, "Communication Retry Count", _T.UNSIGNED),
        ResourceDef(_V.COMMUNICATION_RETRY_TIMER, "Communication Retry Timer", _T.UNSIGNED),
        ResourceDef(_V.COMMUNICATION_SEQUENCE_DELAY_TIMER, "Communication Sequence Delay Timer", _T.UNSIGNED),
        ResourceDef(_V.COMMUNICATION_SEQUENCE_RETRY_COUNT, "Communication Sequence Retry Count", _T.UNSIGNED),
        ResourceDef(_V.TRIGGER, "Trigger", _T.BOOLEAN),
        ResourceDef(_V.PREFERRED_TRANSPORT, "Preferred Transport", _T.STRING),
        ResourceDef(_V.MUTE_SEND, "Mute Send", _T.BOOLEAN),
        ResourceDef(_V.ALTERNATE_APN_LINKS, "Alternate APN Links", _T.OBJLNK, multiple=True),
        ResourceDef(_V.SUPPORTED_SERVER_VERSIONS, "Supported Server Versions", _T.STRING, multiple=True),
        ResourceDef(_V.DEFAULT_NOTIFICATION_MODE, "Default Notification Mode", _T.INTEGER),
        ResourceDef(_V.PROFILE_ID_HASH_ALGORITHM, "Profile ID Hash Algorithm", _T.UNSIGNED),
    ],
    multiple=True,
)

ACCESS_CONTROL = _object(
    ObjectId.ACCESS_CONTROL,
    "LwM2M Access Control",
    [
        ResourceDef(0, "Object ID", _T.INTEGER),
        ResourceDef(1, "Object Instance ID", _T.INTEGER),
        ResourceDef(2, "ACL", _T.INTEGER, multiple=True),
        ResourceDef(3, "Access Control Owner", _T.INTEGER),
    ],
    multiple=True,
)

OSCORE = _object(
    ObjectId.OSCORE,
    "LwM2M OSCORE",
    [
        ResourceDef(_O.MASTER_SECRET, "OSCORE Master Secret", _T.OPAQUE),
        ResourceDef(_O.SENDER_ID, "OSCORE Sender ID", _T.OPAQUE),
        ResourceDef(_O.RECIPIENT_ID, "OSCORE Recipient ID", _T.OPAQUE),
        ResourceDef(_O.AEAD_ALGORITHM, "OSCORE AEAD Algorithm", _T.INTEGER),
        ResourceDef(_O.HMAC_ALGORITHM, "OSCORE HMAC Algorithm", _T.INTEGER),
        ResourceDef(_O.MASTER_SALT, "OSCORE Master Salt", _T.OPAQUE),
        ResourceDef(_O.ID_CONTEXT, "OSCORE ID Context", _T.OPAQUE),
    ],
    multiple=True,
)

#: The objects this package knows, by object ID. Codecs take an ``objects`` argument defaulting
#: to this; pass a larger mapping to decode other objects with their types.
OBJECTS: Mapping[int, ObjectDef] = MappingProxyType(
    {o.id: o for o in (SECURITY, SERVER, ACCESS_CONTROL, OSCORE)}
)


def resource_def(objects: Mapping[int, ObjectDef], object_id: int, resource_id: int) -> ResourceDef | None:
    """Look up a resource definition.

    Args:
        objects: Known object definitions.
        object_id: Object ID.
        resource_id: Resource ID.

    Returns:
        The definition, or None when the object or the resource is unknown.
    """
    obj = objects.get(object_id)
    return None if obj is None else obj.resources.get(resource_id)
