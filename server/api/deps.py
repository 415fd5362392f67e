"""Dependencies of the API routes, as ``Annotated`` aliases. Authentication will be added here, in one place."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from server.context import ServerContext


def get_context(request: Request) -> ServerContext:
    context: ServerContext = request.app.state.context
    return context


ContextDep = Annotated[ServerContext, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with context.session_factory() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
