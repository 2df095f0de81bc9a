"""What the operator's endpoints read as the runtime role: the schema's revision (/readyz)
and, for /metrics, how many stores' syncs stand in each state and how many orders the syncs
found that no webhook had brought, over every seller (counts only, never a row).

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

SCHEMA = """
-- The revision names the schema, nothing of anyone's.
GRANT SELECT ON public.alembic_version TO astra_app;

-- Counts over every seller's syncs: each state's, and the orders found missing.
CREATE FUNCTION public.app_sync_totals()
RETURNS TABLE (state text, syncs bigint, missed_by_webhook bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT s.state, count(*), coalesce(sum(s.missed_by_webhook), 0)::bigint
  FROM public.syncs s GROUP BY s.state ORDER BY s.state
$$;
GRANT SELECT ON public.syncs TO astra_definer;
CREATE POLICY syncs_definer_totals ON public.syncs FOR SELECT TO astra_definer USING (true);
ALTER FUNCTION public.app_sync_totals() OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_sync_totals() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_sync_totals() TO astra_app;
"""


def upgrade() -> None:
    run_script(SCHEMA)


def downgrade() -> None:
    run_script(
        """
        DROP FUNCTION public.app_sync_totals();
        DROP POLICY syncs_definer_totals ON public.syncs;
        REVOKE SELECT ON public.syncs FROM astra_definer;
        REVOKE SELECT ON public.alembic_version FROM astra_app;
        """
    )
