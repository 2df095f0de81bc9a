"""The runtime role may ask whether any account exists: a used set-up link then says Astra
is set up instead of showing its form again. A count, never a row.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_script("GRANT EXECUTE ON FUNCTION public.app_user_count() TO astra_app;")


def downgrade() -> None:
    run_script("REVOKE EXECUTE ON FUNCTION public.app_user_count() FROM astra_app;")
