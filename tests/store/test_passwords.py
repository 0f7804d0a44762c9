"""Password hashes: the stored form, salting, verification, tampered and malformed hashes, and
the rules for a new password. Each scrypt call at the real cost takes tens of milliseconds, so
the hashes here are few and made once per module where they can be."""

from __future__ import annotations

import base64

import pytest

from bastion.store import passwords
from bastion.store.passwords import (
    MIN_LENGTH,
    hash_password,
    password_problem,
    verify_password,
)

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


def fields(stored: str) -> list[str]:
    return stored.split("$")


def with_field(stored: str, index: int, value: str) -> str:
    parts = fields(stored)
    parts[index] = value
    return "$".join(parts)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_the_stored_form_names_its_parameters_and_hides_the_password(stored: str) -> None:
    scheme, n, r, p, salt, digest = fields(stored)
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(digest, validate=True)) == 32
    assert PASSWORD not in stored
    assert verify_password(PASSWORD, stored)


def test_the_same_password_hashes_differently_each_time(stored: str) -> None:
    again = hash_password(PASSWORD)
    assert fields(again)[4] != fields(stored)[4]  # a fresh salt
    assert fields(again)[5] != fields(stored)[5]
    assert verify_password(PASSWORD, again)


def test_only_the_password_itself_verifies(stored: str) -> None:
    for wrong in ["", PASSWORD + " ", " " + PASSWORD, PASSWORD.upper(), PASSWORD[:-1]]:
        assert not verify_password(wrong, stored), wrong
    accented = "pässwörd ✓ 🔑 long"
    made = hash_password(accented)
    assert verify_password(accented, made)
    assert not verify_password("pa\u0308sswo\u0308rd ✓ 🔑 long", made)  # other code points


def test_a_hash_made_under_older_parameters_still_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(passwords, "N", 2**10)
    monkeypatch.setattr(passwords, "R", 4)
    old = hash_password(PASSWORD)
    monkeypatch.undo()
    assert fields(old)[1:4] == [str(2**10), "4", "1"]
    assert verify_password(PASSWORD, old)
    assert not verify_password("another password", old)


def test_a_tampered_hash_does_not_verify(stored: str) -> None:
    salt = base64.b64decode(fields(stored)[4])
    digest = base64.b64decode(fields(stored)[5])
    tampered = [
        with_field(stored, 5, b64(bytes([digest[0] ^ 1]) + digest[1:])),  # one bit of the digest
        with_field(stored, 4, b64(bytes([salt[0] ^ 1]) + salt[1:])),  # one bit of the salt
        with_field(stored, 1, str(2**13)),  # another cost
        with_field(stored, 2, "4"),
        with_field(stored, 3, "2"),
        with_field(stored, 5, b64(digest + b"\x00")),  # longer
        with_field(stored, 5, ""),  # no digest
        with_field(stored, 0, "bcrypt"),  # another scheme
    ]
    for changed in tampered:
        assert not verify_password(PASSWORD, changed), changed


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "scrypt",
        PASSWORD,  # the password stored as it is
        "scrypt$16384$8$1$c2FsdA==",  # a field short
        "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0$extra",
        "scrypt$lots$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$16384$8$1$not base64!$ZGlnZXN0",
        "scrypt$16384$8$1$c2FsdA==$ZGlnZXN0ä",  # not ASCII
        "scrypt$1000$8$1$c2FsdA==$ZGlnZXN0",  # n not a power of two
        "scrypt$16384$0$1$c2FsdA==$ZGlnZXN0",
        "scrypt$1048576$8$1$c2FsdA==$ZGlnZXN0",  # 1 GiB: past scrypt's memory limit
    ],
)
def test_a_malformed_hash_verifies_false(malformed: str) -> None:
    assert verify_password(PASSWORD, malformed) is False


@pytest.mark.parametrize(
    "malformed",
    [
        "scrypt$-16384$8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$16384$-8$1$c2FsdA==$ZGlnZXN0",
        "scrypt$16384$8$-1$c2FsdA==$ZGlnZXN0",
        f"scrypt${2**70}$8$1$c2FsdA==$ZGlnZXN0",
    ],
)
def test_a_hash_with_negative_or_huge_parameters_verifies_false(malformed: str) -> None:
    assert verify_password(PASSWORD, malformed) is False


def test_a_digest_cut_short_does_not_verify(stored: str) -> None:
    digest = base64.b64decode(fields(stored)[5])
    assert not verify_password(PASSWORD, with_field(stored, 5, b64(digest[:1])))


def test_a_new_password_must_be_long_enough_and_not_padded() -> None:
    assert password_problem("x" * MIN_LENGTH) is None
    assert password_problem("ünïcödé ✓ " + "x" * MIN_LENGTH) is None
    short = password_problem("x" * (MIN_LENGTH - 1))
    assert short is not None and str(MIN_LENGTH) in short
    assert password_problem("") is not None
    for padded in [" " + "x" * MIN_LENGTH, "x" * MIN_LENGTH + " ", "x" * MIN_LENGTH + "\n"]:
        problem = password_problem(padded)
        assert problem is not None and "spaces" in problem, padded
    assert password_problem(" " * (MIN_LENGTH + 2)) is not None
