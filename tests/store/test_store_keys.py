"""API keys in the store: issue, verify, list, revoke; scopes by role; secrets never stored.

Tests taking `store` run on SQLite and on PostgreSQL (see conftest.py).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC
from pathlib import Path

import pytest
from sqlalchemy import text

from bastion.errors import InputError
from bastion.store import SCOPES_BY_ROLE, Role, Store


def test_roles_carry_the_documented_scopes() -> None:
    expected = {
        Role.admin: frozenset(
            {"moderate", "decisions:read", "keys:admin", "review", "banks:read", "banks:write"}
        ),
        Role.moderator: frozenset({"moderate", "banks:read"}),
        Role.reviewer: frozenset({"review", "banks:read", "decisions:read"}),
        Role.reader: frozenset({"decisions:read"}),
    }
    assert expected == SCOPES_BY_ROLE


def test_a_new_key_verifies_to_the_same_record(store: Store) -> None:
    key, secret = store.create_key("ingest", role=Role.moderator, project="forum")
    assert re.fullmatch(r"bst_[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"key_[0-9a-f]{12}", key.id)
    assert key.prefix == secret[:12]
    assert (key.name, key.role, key.project) == ("ingest", Role.moderator, "forum")
    assert key.created_at.tzinfo is UTC and key.revoked_at is None
    assert store.verify_key(secret) == key


@pytest.mark.parametrize("role", list(Role))
def test_keys_get_their_roles_scopes(store: Store, role: Role) -> None:
    key, secret = store.create_key(f"{role} key", role=role)
    assert key.scopes == SCOPES_BY_ROLE[role]
    verified = store.verify_key(secret)
    assert verified is not None and verified.scopes == SCOPES_BY_ROLE[role]
    for scope in ("moderate", "decisions:read", "keys:admin"):
        assert verified.allows(scope) == (scope in SCOPES_BY_ROLE[role])


def test_wrong_modified_and_malformed_secrets_do_not_verify(store: Store) -> None:
    _, secret = store.create_key("real")
    _, other = store.create_key("other")
    store.revoke_key(store.verify_key(other).id)  # type: ignore[union-attr]

    def flip(s: str, at: int) -> str:
        return s[:at] + ("A" if s[at] != "A" else "B") + s[at + 1 :]

    wrong = [
        other,  # revoked
        "bst_" + "A" * 43,
        flip(secret, len(secret) - 1),  # same prefix, different tail
        flip(secret, 5),  # different prefix
        secret[:-1],
        secret + "A",
        secret.upper(),
        " " + secret,
        secret[:12],
        "",
        "bst_",
        "Bearer " + secret,
        "bst_" + "!" * 43,
    ]
    for candidate in wrong:
        assert store.verify_key(candidate) is None, candidate
    assert store.verify_key(None) is None  # type: ignore[arg-type]
    assert store.verify_key(secret) is not None


def test_revoked_keys_stop_verifying_and_leave_the_listing(store: Store) -> None:
    first, first_secret = store.create_key("first")
    second, _ = store.create_key("second", role=Role.reader)
    third, _ = store.create_key("third", role=Role.admin)
    assert store.count_keys() == 3
    assert [k.id for k in store.list_keys()] == [first.id, second.id, third.id]

    assert store.revoke_key(first.id) is True
    assert store.revoke_key(first.id) is False  # already revoked
    assert store.revoke_key("key_000000000000") is False  # unknown
    assert store.verify_key(first_secret) is None
    assert store.count_keys() == 2
    assert [k.id for k in store.list_keys()] == [second.id, third.id]

    listed = store.list_keys(include_revoked=True)
    assert [k.id for k in listed] == [first.id, second.id, third.id]
    revoked = listed[0]
    assert revoked.revoked_at is not None and revoked.revoked_at.tzinfo is UTC
    assert revoked.revoked_at >= revoked.created_at
    assert not revoked.allows("moderate")


def test_custom_scopes_replace_the_roles_and_must_be_known(store: Store) -> None:
    key, secret = store.create_key("read-only admin", role=Role.admin, scopes=["decisions:read"])
    assert key.scopes == frozenset({"decisions:read"})
    assert store.verify_key(secret) == key
    assert not key.allows("keys:admin")

    with pytest.raises(InputError, match="'decisions:write'"):
        store.create_key("x", scopes=["moderate", "decisions:write"])
    with pytest.raises(InputError, match="scope"):
        store.create_key("x", scopes="moderate")
    assert store.count_keys() == 1


def test_names_projects_and_roles_are_checked(store: Store) -> None:
    for bad_name in ("", "   "):
        with pytest.raises(InputError, match="name"):
            store.create_key(bad_name)
    with pytest.raises(InputError, match="project"):
        store.create_key("x", project="")
    with pytest.raises(InputError, match="'superuser'"):
        store.create_key("x", role="superuser")  # type: ignore[arg-type]
    key, _ = store.create_key("from the CLI", role="reader")  # type: ignore[arg-type]
    assert key.role is Role.reader
    assert store.count_keys() == 1


def test_secrets_are_never_stored(store: Store) -> None:
    secrets = [store.create_key(f"k{i}", role=role)[1] for i, role in enumerate(Role)]
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM api_keys")).all()
        cells = [str(cell) for row in rows for cell in row]
    for secret in secrets:
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert digest in cells  # the hash is what identifies it
        assert not any(secret[12:] in cell for cell in cells)


def test_secrets_are_never_written_to_the_sqlite_files(home: Path) -> None:
    store = Store.open(home)
    secrets = [store.create_key(f"k{i}", role=role)[1] for i, role in enumerate(Role)]
    files = [p for p in home.iterdir() if p.is_file()]  # the database, its -wal and -shm
    raw_open = b"".join(p.read_bytes() for p in files)
    store.close()  # checkpoints the WAL into the main file
    raw_closed = b"".join(p.read_bytes() for p in home.iterdir() if p.is_file())
    for raw in (raw_open, raw_closed):
        assert hashlib.sha256(secrets[0].encode()).hexdigest().encode() in raw
        for secret in secrets:
            assert secret.encode() not in raw
            assert secret[12:].encode() not in raw
