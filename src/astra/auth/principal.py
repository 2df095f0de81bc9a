"""Who is acting, and the permission predicates everything else asks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from astra.auth.models import Role


@dataclass(frozen=True, slots=True)
class Principal:
    id: uuid.UUID
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin


def can_manage(principal: Principal, owner_id: uuid.UUID) -> bool:
    """Owners manage their own records; admins manage everyone's."""
    return principal.is_admin or principal.id == owner_id
