from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from astra.auth.passwords import MIN_PASSWORD_LENGTH

Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        to_lower=True,
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s\x00]+@[^@\s\x00]+$",
    ),
]


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class SetupRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=200)]
    email: Email
    password: Annotated[str, Field(min_length=MIN_PASSWORD_LENGTH, max_length=1024)]


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    role: Literal["admin", "seller"]
