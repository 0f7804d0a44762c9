"""The key cache: a live key is trusted for its TTL only, unknown keys are always looked up."""

from __future__ import annotations

import time
from pathlib import Path

from bastion.server.security import VerifiedKeys
from bastion.store import Role, Store


def test_a_live_key_is_read_once_per_ttl_and_a_revocation_lands_after_it(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    key, secret = store.create_key("k", Role.moderator)
    reads: list[str] = []

    def verify(s: str) -> object:
        reads.append(s)
        return store.verify_key(s)

    keys = VerifiedKeys(verify, ttl_s=0.3)  # type: ignore[arg-type]
    assert keys(secret) == key and keys(secret) == key and len(reads) == 1
    store.revoke_key(key.id)
    assert keys(secret) == key  # within the TTL: remembered
    time.sleep(0.35)
    assert keys(secret) is None and len(reads) == 2
    store.close()


def test_unknown_keys_are_never_remembered_and_ttl_0_turns_the_cache_off(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    key, secret = store.create_key("k", Role.moderator)
    reads: list[str] = []

    def verify(s: str) -> object:
        reads.append(s)
        return store.verify_key(s)

    keys = VerifiedKeys(verify, ttl_s=60)  # type: ignore[arg-type]
    bogus = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert keys(bogus) is None and keys(bogus) is None and len(reads) == 2
    off = VerifiedKeys(verify, ttl_s=0)  # type: ignore[arg-type]
    assert off(secret) == key
    store.revoke_key(key.id)
    assert off(secret) is None and len(reads) == 4
    store.close()
