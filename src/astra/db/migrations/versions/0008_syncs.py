"""Syncs: each integration's import of its store's orders (state, progress, where a run
resumes, its claim), and where each order came from (webhook or sync).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

SCHEMA = """
-- How Astra first learned of the order; the orders stored so far came by webhook.
ALTER TABLE public.orders
  ADD COLUMN origin text NOT NULL DEFAULT 'webhook' CHECK (origin IN ('webhook', 'sync'));

CREATE TABLE public.syncs (
  integration_id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  -- No row: never synced.
  state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
  imported integer NOT NULL DEFAULT 0 CHECK (imported >= 0),
  total integer CHECK (total >= 0),
  missed_by_webhook integer NOT NULL DEFAULT 0 CHECK (missed_by_webhook >= 0),
  updated_since timestamptz,
  cursor text CHECK (char_length(cursor) <= 4000),
  synced_through timestamptz,
  run_id uuid,
  heartbeat_at timestamptz,
  requested_at timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  last_synced_at timestamptz,
  error text CHECK (char_length(error) <= 1000),
  note text CHECK (char_length(note) <= 500),
  -- A running sync holds a claim, and only a running one does.
  CONSTRAINT syncs_running_claim CHECK ((state = 'running') = (run_id IS NOT NULL)),
  CONSTRAINT syncs_integration_fkey FOREIGN KEY (integration_id, user_id)
    REFERENCES public.integrations (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
);
ALTER TABLE public.syncs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.syncs FORCE ROW LEVEL SECURITY;
-- Rows go with their integration (the foreign key's cascade), never by the app.
GRANT SELECT, INSERT, UPDATE ON public.syncs TO astra_app;
-- Owners and admins ask for a store's sync and read it, as they manage the integration;
-- the sync itself runs as the owner.
CREATE POLICY syncs_owner_or_admin ON public.syncs FOR ALL TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()))
  WITH CHECK (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));

-- What the periodic reconciliation syncs: every active integration with credentials, of
-- every seller, so it is asked before acting as anyone. Ids only; each sync then acts as
-- its integration's owner.
CREATE FUNCTION public.app_integrations_to_reconcile() RETURNS SETOF uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT i.id FROM public.integrations i
  WHERE i.is_active AND i.credentials_kind IS NOT NULL AND i.superseded_at IS NULL
  ORDER BY i.id
$$;
ALTER FUNCTION public.app_integrations_to_reconcile() OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_integrations_to_reconcile() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_integrations_to_reconcile() TO astra_app;

-- What the daily webhook check looks at: each active integration with credentials whose
-- order webhooks Astra registered, with its owner, whom the check then acts as.
CREATE FUNCTION public.app_integrations_with_webhooks()
RETURNS TABLE (integration_id uuid, user_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT DISTINCT i.id, i.user_id FROM public.integrations i
  JOIN public.store_webhooks w ON w.integration_id = i.id
  WHERE i.is_active AND i.credentials_kind IS NOT NULL
  ORDER BY i.id
$$;
GRANT SELECT ON public.store_webhooks TO astra_definer;
CREATE POLICY store_webhooks_definer_read ON public.store_webhooks FOR SELECT TO astra_definer
  USING (true);
ALTER FUNCTION public.app_integrations_with_webhooks() OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_integrations_with_webhooks() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_integrations_with_webhooks() TO astra_app;
"""


def upgrade() -> None:
    run_script(SCHEMA)


def downgrade() -> None:
    run_script(
        """
        DROP FUNCTION public.app_integrations_with_webhooks();
        DROP POLICY store_webhooks_definer_read ON public.store_webhooks;
        REVOKE SELECT ON public.store_webhooks FROM astra_definer;
        DROP FUNCTION public.app_integrations_to_reconcile();
        DROP TABLE public.syncs;
        ALTER TABLE public.orders DROP COLUMN origin;
        """
    )
