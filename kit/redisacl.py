"""Redis ACL users: one per kind of client, so no client can touch another's keys.

The same rules are spelled out in docker-compose.yml and deploy/k8s (tests compare them):
- `default` is off: a client that does not authenticate can do nothing.
- `gateway` (the gateway and `python -m gateway.cli`): every `tk:*` key except the services'
  `tk:nonce:*`, the `tk:*` pub/sub channels, and reads, writes, Lua and pub/sub commands;
  nothing that reconfigures, flushes or scans the server.
- `services` (replay protection in every service): only `tk:nonce:*`, only SET and PING.
- `admin`: the kit's own (readiness probe, tests); never handed to a tenantkit process.
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass

# ACL key patterns cannot subtract, so "tk:* except tk:nonce:*" is spelled as the globs that
# match every tk: key whose name leaves the prefix "tk:nonce:" at some character.
_NOT_NONCE = [
    "tk:[^n]*",
    "tk:n[^o]*",
    "tk:no[^n]*",
    "tk:non[^c]*",
    "tk:nonc[^e]*",
    "tk:nonce[^:]*",
    "tk:n",
    "tk:no",
    "tk:non",
    "tk:nonc",
    "tk:nonce",
]
GATEWAY_RULES = (
    "resetkeys "
    + " ".join(f"~{p}" for p in _NOT_NONCE)
    + " resetchannels &tk:* -@all +@read +@write +@pubsub +@scripting +@connection"
    + " +@transaction +time -@dangerous -@admin -function -script|flush -script|kill"
)
SERVICES_RULES = "resetkeys ~tk:nonce:* resetchannels -@all +set +ping +hello +auth"
ADMIN_RULES = "allkeys allchannels +@all"
USERS = ("admin", "gateway", "services")


@dataclass(frozen=True, slots=True)
class RedisPasswords:
    """One password per ACL user."""

    admin: str
    gateway: str
    services: str

    @classmethod
    def generate(cls) -> RedisPasswords:
        """Fresh random passwords (hex: safe in URLs and shell lines)."""
        return cls(**{user: secrets.token_hex(24) for user in USERS})

    def of(self, user: str) -> str:
        return str(getattr(self, user))


def acl_rules(passwords: RedisPasswords) -> list[str]:
    """`user ...` lines; passwords as SHA-256 (`#hex`), so the clear text is in no argv."""
    rules = {"admin": ADMIN_RULES, "gateway": GATEWAY_RULES, "services": SERVICES_RULES}
    lines = ["default off resetpass resetkeys resetchannels -@all"]
    for user in USERS:
        digest = hashlib.sha256(passwords.of(user).encode()).hexdigest()
        lines.append(f"{user} on resetpass #{digest} {rules[user]}")
    return lines


def redis_url(*, user: str, password: str, host: str, port: int, db: int = 0) -> str:
    """`redis://user:password@host:port/db`, the password quoted for a URL."""
    quoted = urllib.parse.quote(password, safe="")
    return f"redis://{user}:{quoted}@{host}:{port}/{db}"
