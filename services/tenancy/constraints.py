"""Constraint violations as domain errors, by the constraint's name as the schema gives it.

On Citus a violation is reported by the shard: `users_tenant_email_key` arrives as
`users_tenant_email_key_102196` (the shard id appended), or, when the name plus the suffix
would pass PostgreSQL's 63-byte limit, as `<clipped name>_<8 hex hash>_<shard id>`. Matching
those forms here, once, keeps every service's error answers the same on Citus as elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from sqlalchemy.exc import IntegrityError

# PostgreSQL's NAMEDATALEN - 1: the longest identifier, in bytes.
_MAX_NAME_BYTES = 63
_SHARD_SUFFIX = re.compile(r"_(\d+)$")
_HASHED_SUFFIX = re.compile(r"_[0-9a-f]{8}_(\d+)$")
# PostgreSQL's own wording ('violates unique constraint "x"', '... foreign key constraint
# "x"'): the coordinator relays a worker's error with its message but without the field.
_NAMED_IN_MESSAGE = re.compile(r'violates [a-z ]*constraint "([^"]+)"')


def constraint_name_matches(reported: str, name: str) -> bool:
    """True when `reported` is `name` itself or a Citus shard's copy of it."""
    if reported == name:
        return True
    plain = _SHARD_SUFFIX.search(reported)
    if plain is not None and reported[: plain.start()] == name:
        return True
    hashed = _HASHED_SUFFIX.search(reported)
    if hashed is None:
        return False
    # Citus clips only names too long to take the suffix whole; a clipped prefix of a short
    # name is another constraint. (Two long names of one table sharing the clipped prefix
    # would differ only in the hash; no tenantkit table has such a pair.)
    shard_suffix_bytes = 1 + len(hashed.group(1))
    clipped = reported[: hashed.start()]
    too_long = len(name.encode()) >= _MAX_NAME_BYTES + 1 - shard_suffix_bytes
    return too_long and bool(clipped) and name.startswith(clipped)


def violated_constraint(error: IntegrityError) -> str | None:
    """The name PostgreSQL reported for the violated constraint, when it reported one."""
    diag = getattr(error.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if isinstance(name, str):
        return name
    message = getattr(diag, "message_primary", None)
    found = _NAMED_IN_MESSAGE.search(message) if isinstance(message, str) else None
    return found.group(1) if found else None


def domain_error_for(
    error: IntegrityError, by_constraint: Mapping[str, type[Exception]]
) -> type[Exception] | None:
    """The domain error a service maps to the violated constraint, shard suffix or not."""
    reported = violated_constraint(error)
    if reported is None:
        return None
    if reported in by_constraint:  # an exact name wins over another's shard form
        return by_constraint[reported]
    for name, domain_error in by_constraint.items():
        if constraint_name_matches(reported, name):
            return domain_error
    return None
