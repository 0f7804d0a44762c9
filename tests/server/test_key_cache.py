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


class FakeClock:
    """Monotonic seconds that move only when the test says so: no sleeping, no race with a
    busy machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_live_key_is_read_once_per_ttl_and_a_revocation_lands_after_it(store: Store) -> None:
    from bastion.server.security import VerifiedKeys

    key, secret = store.create_key("k", Role.moderator)
    reads: list[str] = []
    clock = FakeClock()
    keys = VerifiedKeys(counting(store, reads), ttl_s=0.3, clock=clock)
    assert keys(secret) == key and keys(secret) == key and len(reads) == 1
    store.revoke_key(key.id)
    clock.now += 0.299
    assert keys(secret) == key and len(reads) == 1  # within the TTL: remembered
    clock.now += 0.001
    assert keys(secret) is None and len(reads) == 2  # at the TTL: read again, revoked
    assert keys(secret) is None and len(reads) == 3  # revoked keys are not remembered


def test_the_key_cache_reads_the_time_from_the_monotonic_clock_by_default() -> None:
    from bastion.server.security import VerifiedKeys

    assert VerifiedKeys(lambda secret: None)._clock is time.monotonic


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
