"""What the service's routers share, read back from `app.state`: `create_app` builds it once per
app from the settings (the store, the moderator pool, the banks, the recall jobs, ...) and puts
it there, and a route takes what it needs as a typed dependency made by `state_of`.

(No `from __future__ import annotations`: FastAPI reads these signatures at run time.)
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from bastion.server.pool import ModeratorPool
from bastion.store import Store


def state_of(name: str) -> Callable[[Request], Any]:
    """The dependency that reads `app.state.<name>`, as `create_app` set it (async, so FastAPI
    calls it on the event loop rather than through a worker thread)."""

    async def read(request: Request) -> Any:
        return getattr(request.app.state, name)

    return read


TheStore = Annotated[Store, Depends(state_of("store"))]
ThePool = Annotated[ModeratorPool, Depends(state_of("pool"))]
