"""The key cache: a live key is trusted for its TTL only, unknown keys are always looked up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bastion.store import ApiKey, Role, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(tmp_path)
    yield s
    s.close()


def counting(store: Store, reads: list[str]) -> Callable[[str], ApiKey | None]:
    def verify(secret: str) -> ApiKey | None:
        reads.append(secret)
        return store.verify_key(secret)

    return verify


def test_a_live_key_is_read_once_per_ttl_and_a_revocation_lands_after_it(store: Store) -> None:
    from bastion.server.security import VerifiedKeys

    key, secret = store.create_key("k", Role.moderator)
    reads: list[str] = []
    keys = VerifiedKeys(counting(store, reads), ttl_s=0.3)
    assert keys(secret) == key and keys(secret) == key and len(reads) == 1
    store.revoke_key(key.id)
    assert keys(secret) == key  # within the TTL: remembered
    time.sleep(0.35)
    assert keys(secret) is None and len(reads) == 2


def test_unknown_keys_are_never_remembered_and_ttl_0_turns_the_cache_off(store: Store) -> None:
    from bastion.server.security import VerifiedKeys

    key, secret = store.create_key("k", Role.moderator)
    reads: list[str] = []
    keys = VerifiedKeys(counting(store, reads), ttl_s=60)
    bogus = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert keys(bogus) is None and keys(bogus) is None and len(reads) == 2
    off = VerifiedKeys(counting(store, reads), ttl_s=0)
    assert off(secret) == key
    store.revoke_key(key.id)
    assert off(secret) is None and len(reads) == 4
