"""The store's error: a database write or read failed, and the message says which and why."""

from __future__ import annotations

from bastion.errors import BastionError, ErrorCode


class StoreError(BastionError):
    """The database refused or failed an operation (a write that did not commit, a schema that would not migrate).

    When `log_decisions` raises this, nothing of that batch was written: the caller must not
    acknowledge those verdicts as logged. The API answers 503 (the database failed, not the
    request: retry), and the driver's words stay in the server's log.
    """

    status = 503
    code = ErrorCode.service_unavailable
    client_message = (
        "the decision log could not be written, so the verdicts were not returned; retry"
    )
