"""JSON sign-in routes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from astra.auth import service
from astra.auth.deps import SESSION_COOKIE, CurrentUser, session_token
from astra.auth.limits import SignInLimits
from astra.auth.principal import Principal
from astra.auth.schemas import LoginRequest, SetupRequest, UserRead
from astra.db.session import Db
from astra.errors import NotAuthenticated
from astra.http import SettingsDep, error_responses
from astra.settings import Settings

router = APIRouter(prefix="/api/auth", tags=["auth"])


def _set_session_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=settings.secure_cookies,
        path="/",
    )


async def _me(db: Db, token: str) -> UserRead:
    principal = await service.authenticate(db, token)
    assert principal is not None
    return _user_read(principal)


def _user_read(principal: Principal) -> UserRead:
    return UserRead(id=principal.id, email=principal.email, role=principal.role)


def _limits(request: Request) -> SignInLimits:
    limits: SignInLimits = request.app.state.sign_in_limits
    return limits


def _client_address(request: Request) -> str:
    # Behind a proxy uvicorn's proxy_headers put the forwarded client here.
    return request.client.host if request.client else "unknown"


@router.post("/login", responses=error_responses(400, 401, 422, 429))
async def login(
    body: LoginRequest, request: Request, response: Response, db: Db, settings: SettingsDep
) -> UserRead:
    """Failed attempts are limited per email and client address and per client address
    (HTTP 429 with Retry-After; over a limit the password is not checked); an email that
    fails from many addresses is slowed down by a few seconds at most."""
    async with _limits(request).attempt(db, address=_client_address(request), account=body.email):
        token = await service.login(
            db, email=body.email, password=body.password, ttl=settings.session_ttl
        )
    _set_session_cookie(response, settings, token)
    return await _me(db, token)


@router.post(
    "/setup",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(400, 403, 409, 422, 429),
)
async def setup(
    body: SetupRequest, request: Request, response: Response, db: Db, settings: SettingsDep
) -> UserRead:
    """Create the first admin account with the one-time link printed by `astra serve`."""
    async with _limits(request).attempt(db, address=_client_address(request)):
        service.check_setup_token(settings.setup_token, body.token)
    token = await service.create_first_admin(
        db, email=body.email, password=body.password, ttl=settings.session_ttl
    )
    _set_session_cookie(response, settings, token)
    return await _me(db, token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(401))
async def logout(request: Request, db: Db, user: CurrentUser) -> Response:
    token = session_token(request)
    if token is None:
        raise NotAuthenticated("Sign in to continue.")
    await service.logout(db, token)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/me", responses=error_responses(401))
async def me(user: CurrentUser) -> UserRead:
    return _user_read(user)
