"""The hash chain of an organisation's audit trail.

Each event stores `hash = sha256(FORMAT + canonical JSON of its content and the previous event's
hash)`: change any stored field of any event, remove one, or reorder them, and every later link
breaks at that position. The canonical form is fixed here and shared by the writer, `manage.py
audit verify` and `manage.py audit verify-export`, which rebuilds it from an exported file; it
must not change, or old chains stop verifying (a new form needs a new FORMAT and both kept).

The content is hashed as the database gives it back, not as Python first held it: PostgreSQL's
jsonb keeps numbers as decimals (1e300 comes back as an integer with 300 zeros, 1.0 as 1.0), so
every number is written as its exact decimal (zero unsigned), and an address as `ipaddress` prints it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

FORMAT = b"policyhub-audit-v1\n"
# The `prev` of an organisation's first event.
GENESIS = "0" * 64

# The hashed fields, in the order exports write them (the names are the exports' columns).
FIELDS = (
    "seq",
    "created_at",
    "actor_kind",
    "actor_label",
    "actor_id",
    "action",
    "object_type",
    "object_key",
    "before",
    "after",
    "reason",
    "source_address",
    "request_id",
)


def event_hash(organization_id: int | None, prev: str, content: Mapping[str, Any]) -> str:
    """The hash of one event: its organisation, the previous hash and the FIELDS of `content`
    (values as `canonical_value` accepts them)."""
    body = {name: canonical_value(name, content[name]) for name in FIELDS}
    body["organization"] = organization_id
    body["prev"] = prev
    return hashlib.sha256(FORMAT + _encode(body).encode()).hexdigest()


def canonical_value(name: str, value: Any) -> Any:
    """One field as hashed: the time in UTC with microseconds, an address in its normal form,
    empty text for no address or request id."""
    if name == "created_at":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("created_at must be an aware time")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if name == "source_address":
        return _address(value) if value else ""
    if name in ("request_id", "reason") and value is None:
        return ""
    return value


def _address(value: str) -> str:
    """An address in one form on every Python: `str()` of an IPv4-mapped IPv6 address changed
    between releases (::ffff:102:304, later ::ffff:1.2.3.4); this is the later, RFC 5952's."""
    address = ipaddress.ip_address(value)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return address.compressed


def _encode(value: Any) -> str:
    """JSON with sorted keys, no spaces, text as is, and numbers as exact decimals."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float | Decimal):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            raise ValueError("audit values are finite numbers")
        # Zero without a sign: PostgreSQL's numeric has no negative zero.
        return "0" if number.is_zero() else format(number.normalize(), "f")
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = sorted((str(key), item) for key, item in value.items())
        return (
            "{"
            + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_encode(v)}" for k, v in items)
            + "}"
        )
    raise TypeError(f"cannot hash a {type(value).__name__} in an audit event")
