"""Who is acting: the signed-in user and their role."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from astra.db.tables import Role


@dataclass(frozen=True, slots=True)
class Principal:
    id: uuid.UUID
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.admin
