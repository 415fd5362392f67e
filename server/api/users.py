"""Users: the clerk manages accounts and roles; everyone changes their own password."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from server.api.deps import ClerkUser, ContextDep, LoginDep, SessionDep, client_ip
from server.api.params import UsernamePath
from server.api.routing import ValidatedRoute
from server.api.schemas import PasswordChange, UserCreate, UserPublic, UserUpdate
from server.auth.login import change_password
from server.auth.passwords import hash_password
from server.auth.users import change_user, get_user, list_users, register_user

router = APIRouter(prefix="/users", tags=["users"], route_class=ValidatedRoute)


@router.get("")
def read_users(_clerk: ClerkUser, session: SessionDep) -> list[UserPublic]:
    """Every user, by username (clerk only)."""
    return [UserPublic.model_validate(user) for user in list_users(session)]


@router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Username taken"}})
def add_user(body: UserCreate, clerk: ClerkUser, session: SessionDep) -> UserPublic:
    """Create a user, optionally assigned to cases at once (clerk only)."""
    user = register_user(
        session,
        actor=clerk,
        username=body.username,
        role=body.role,
        password_hash=hash_password(body.password),
        full_name=body.full_name,
        case_nos=body.case_nos,
    )
    session.commit()
    return UserPublic.model_validate(user)


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        401: {"description": "This login has ended (meanwhile: signed out, or the password reset, or disabled)"},
        403: {"description": "The current password is wrong"},
        429: {"description": "Too many wrong passwords (they count as failed logins); Retry-After says when"},
    },
)
def change_own_password(
    body: PasswordChange, login: LoginDep, request: Request, session: SessionDep, context: ContextDep
) -> None:
    """Change your own password; your other logins end. Wrong current passwords are throttled as failed logins."""
    change_password(
        session,
        user=login.user,
        session_id=login.session_id,
        current=body.current_password,
        new=body.new_password,
        ip=client_ip(request, context),
        settings=context.settings.auth,
    )


@router.get("/{username}")
def read_user(username: UsernamePath, _clerk: ClerkUser, session: SessionDep) -> UserPublic:
    """One user (clerk only)."""
    return UserPublic.model_validate(get_user(session, username=username))


@router.patch("/{username}")
def update_user(username: UsernamePath, body: UserUpdate, clerk: ClerkUser, session: SessionDep) -> UserPublic:
    """Change a user's role, name or password, or disable them; role, password and disabling end their logins."""
    user = get_user(session, username=username)
    password_hash = hash_password(body.password) if body.password is not None else None
    change_user(
        session,
        actor=clerk,
        user=user,
        role=body.role,
        disabled=body.disabled,
        full_name=body.full_name,
        password_hash=password_hash,
    )
    session.commit()
    return UserPublic.model_validate(user)
