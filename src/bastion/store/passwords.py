"""Passwords of the people who log in to the web app: salted scrypt hashes, checked in constant time.

Unlike an API key (256 random bits, for which `keys.hash_secret`'s plain SHA-256 is right), a
password is chosen by a person and can be guessed; a memory-hard KDF makes each guess against a
stolen database cost about 16 MiB and tens of milliseconds. The stored form names its own
parameters (`scrypt$n$r$p$salt$hash`), so they can be raised later without breaking old hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

N: Final = 2**14
R: Final = 8
P: Final = 1
DIGEST_BYTES: Final = 32
MIN_LENGTH: Final = 10
"""Shortest password accepted: long enough that guessing one offline costs real money."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=N, r=R, p=P, dklen=DIGEST_BYTES)
    return "$".join(("scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether `password` is the one `stored` was made from (False for a malformed hash).

    `stored` None (nobody by that name, or nobody who may log in) does the same scrypt work
    against a stand-in hash and answers False: were it answered at once, a wrong password
    for a real person (tens of milliseconds) and any password for an unknown name (none)
    would tell a stranger which names exist."""
    if stored is None:
        stored = _stand_in()
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest, validate=True)
        # A digest cut short would still match the start of the right one (and 1 wrong
        # password in 256 per byte left): only the full length counts.
        if scheme != "scrypt" or len(expected) != DIGEST_BYTES:
            return False
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt, validate=True),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=DIGEST_BYTES,
        )
    except (ValueError, TypeError, OverflowError, MemoryError):
        # Malformed, or parameters scrypt refuses (negative, huge): not a match, never a crash.
        return False
    return hmac.compare_digest(actual, expected)


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    if password.strip() != password:
        return "a password may not start or end with spaces"
    return None


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _stand_in() -> str:
    """What a missing hash is checked against: today's parameters, so it costs what checking a
    new hash costs, and an all-zero digest that no password's scrypt output will ever equal."""
    return "$".join(("scrypt", str(N), str(R), str(P), _b64(bytes(16)), _b64(bytes(DIGEST_BYTES))))
