"""API keys: roles and their scopes, the key record the server sees, and how secrets are made and hashed.

A key's secret is shown once, at creation, and never stored: the database keeps its first
characters (`prefix`, to find the row and to show the key in listings) and its SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Role(StrEnum):
    """What a key is for; the role gives the key its default scopes."""

    admin = "admin"
    moderator = "moderator"
    reviewer = "reviewer"
    reader = "reader"


SCOPE_MODERATE = "moderate"
SCOPE_DECISIONS_READ = "decisions:read"
SCOPE_KEYS_ADMIN = "keys:admin"
SCOPE_REVIEW = "review"  # work the review queues: list, claim, decide
SCOPE_BANKS_READ = "banks:read"  # list banks and match content against them
SCOPE_BANKS_WRITE = "banks:write"  # add entries to banks

SCOPES_BY_ROLE: dict[Role, frozenset[str]] = {
    Role.admin: frozenset(
        {
            SCOPE_MODERATE,
            SCOPE_DECISIONS_READ,
            SCOPE_KEYS_ADMIN,
            SCOPE_REVIEW,
            SCOPE_BANKS_READ,
            SCOPE_BANKS_WRITE,
        }
    ),
    Role.moderator: frozenset({SCOPE_MODERATE, SCOPE_BANKS_READ}),
    Role.reviewer: frozenset({SCOPE_REVIEW, SCOPE_BANKS_READ, SCOPE_DECISIONS_READ}),
    Role.reader: frozenset({SCOPE_DECISIONS_READ}),
}

KNOWN_SCOPES: frozenset[str] = frozenset().union(*SCOPES_BY_ROLE.values())

SECRET_PREFIX = "bst_"  # noqa: S105 (the public marker of our keys, not a secret)
PREFIX_LENGTH = 12
"""Characters of the secret kept in clear: "bst_" plus 8 random ones (48 bits), enough to find the row."""

_TOKEN_BYTES = 32
_SECRET_RE = re.compile(r"bst_[A-Za-z0-9_-]{43}")
"""`secrets.token_urlsafe(32)` is 43 URL-safe base64 characters; anything else is not one of ours."""


@dataclass(frozen=True)
class ApiKey:
    """One API key as the server sees it. It never holds the secret, only what identifies the key."""

    id: str
    name: str
    prefix: str
    role: Role
    project: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: str) -> bool:
        """True when the key is live and carries `scope`."""
        return self.revoked_at is None and scope in self.scopes


def new_secret() -> str:
    """A fresh plaintext key: "bst_" and 256 random bits."""
    return SECRET_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)


def new_key_id() -> str:
    """A public key id ("key_" and 12 hex characters): safe to log, to show and to revoke by."""
    return "key_" + secrets.token_hex(6)


def is_well_formed(secret: str) -> bool:
    """Whether `secret` has the shape of a key we issue (checked before touching the database)."""
    return _SECRET_RE.fullmatch(secret) is not None


def secret_prefix(secret: str) -> str:
    return secret[:PREFIX_LENGTH]


def hash_secret(secret: str) -> str:
    """SHA-256 of the secret, hex.

    A plain fast hash is the right tool here, not a slow KDF (bcrypt, scrypt, argon2): those
    exist to make guessing a low-entropy password expensive, and a key is 256 bits from
    `secrets`, which no amount of hashing speed makes guessable. A fast hash also keeps the
    per-request verification cost negligible.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()
