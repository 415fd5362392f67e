"""Writing a row that must be unique while another transaction may write the same one at once.

A check before the insert (``SELECT`` the username, then ``INSERT``) is not enough on PostgreSQL: two transactions
(READ COMMITTED) both find nothing and both insert, and the second fails on the unique index with an
:class:`~sqlalchemy.exc.IntegrityError` — a 500 if nothing catches it. (SQLite hides the race: its transactions
take the write lock at ``BEGIN IMMEDIATE`` and run one after the other.) Each such insert therefore runs in a
savepoint (:func:`unique_or`): the loser's insert is undone alone, the transaction stays usable, and the caller
raises what the check would have raised (usually :class:`~server.errors.AlreadyExists`, 409) or, for a
"get or create", reads the winner's row (committed: the loser's insert waited for it).

What still escapes a route (an insert not yet so guarded) is answered 409, not 500, by the app's handler
(:func:`server.app._add_error_handlers`) and the pages' route (:class:`server.web.routing.PageRoute`), with
:data:`TAKEN_MEANWHILE` and a log line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

#: PostgreSQL's unique_violation.
UNIQUE_SQLSTATE = "23505"
#: SQLite's extended result codes SQLITE_CONSTRAINT_UNIQUE and SQLITE_CONSTRAINT_PRIMARYKEY.
UNIQUE_SQLITE_CODES = frozenset({2067, 1555})

#: What a request is told when what it would have written was written meanwhile by another (409).
TAKEN_MEANWHILE = (
    "刚有另一项操作写入了相同的记录（例如同一表单提交了两次），本次操作未作任何更改；请刷新页面查看。"
    " / The same record was written meanwhile by another action (the same form sent twice, say): nothing was "
    "changed by this one; look again."
)


def unique_violation(exc: BaseException) -> bool:
    """Whether ``exc`` is a unique index's refusal (PostgreSQL or SQLite), not another integrity error."""
    if not isinstance(exc, IntegrityError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == UNIQUE_SQLSTATE:
        return True
    return getattr(orig, "sqlite_errorcode", None) in UNIQUE_SQLITE_CODES


@contextmanager
def unique_or(session: Session, refusal: Callable[[], Exception]) -> Iterator[None]:
    """Run the block (its ``session.add`` and ``flush``) in a savepoint; if a unique index refuses it, the savepoint
    is rolled back and ``refusal()`` is raised instead (the transaction goes on)."""
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        if not unique_violation(exc):
            raise
        raise refusal() from None
