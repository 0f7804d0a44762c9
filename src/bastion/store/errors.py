"""The store's error: a database write or read failed, and the message says which and why."""

from __future__ import annotations

from bastion.errors import BastionError


class StoreError(BastionError):
    """The database refused or failed an operation (a write that did not commit, a schema that would not migrate).

    When `log_decisions` raises this, nothing of that batch was written: the caller must not
    acknowledge those verdicts as logged.
    """
