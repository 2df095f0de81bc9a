"""Orders and webhook deliveries under row-level security, and secret rotation.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SCHEMA = """
-- A rotated secret keeps verifying until previous_secret_expires_at.
ALTER TABLE public.integrations
  ADD COLUMN previous_webhook_secret text
    CHECK (char_length(previous_webhook_secret) >= 16),
  ADD COLUMN previous_secret_expires_at timestamptz,
  ADD CONSTRAINT integrations_previous_secret_pair CHECK (
    (previous_webhook_secret IS NULL) = (previous_secret_expires_at IS NULL)
  ),
  -- Target of the child tables' (integration_id, user_id) foreign keys: the denormalised
  -- owner on every order and delivery is always the integration's owner.
  ADD CONSTRAINT integrations_id_user_key UNIQUE (id, user_id);

CREATE TABLE public.orders (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  integration_id uuid NOT NULL,
  user_id uuid NOT NULL,
  platform text NOT NULL CHECK (platform IN ('shopify', 'woocommerce')),
  platform_order_id text NOT NULL CHECK (char_length(platform_order_id) BETWEEN 1 AND 64),
  order_number text CHECK (char_length(order_number) <= 100),
  total numeric,
  currency text CHECK (char_length(currency) <= 10),
  financial_status text CHECK (char_length(financial_status) <= 50),
  placed_at timestamptz,
  -- The platform's own updated_at: an older version never overwrites a newer one.
  source_updated_at timestamptz,
  deleted_at timestamptz,
  raw jsonb NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT orders_integration_fkey FOREIGN KEY (integration_id, user_id)
    REFERENCES public.integrations (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT orders_integration_order_key UNIQUE (integration_id, platform_order_id)
);
-- Keyset pagination, newest first, over live orders: per integration, per seller, and
-- over everything for admins. The first also serves the order stats on every integration,
-- index-only: it carries user_id, which the RLS policy reads.
CREATE INDEX orders_integration_received_idx
  ON public.orders (integration_id, received_at DESC, id DESC) INCLUDE (user_id)
  WHERE deleted_at IS NULL;
CREATE INDEX orders_user_received_idx
  ON public.orders (user_id, received_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX orders_received_idx
  ON public.orders (received_at DESC, id DESC) WHERE deleted_at IS NULL;
-- The integration decides the owner: without this the planner multiplies the two filters'
-- selectivities and misjudges "this integration's orders, as its owner".
CREATE STATISTICS orders_integration_user_stats (dependencies)
  ON integration_id, user_id FROM public.orders;

-- One row per accepted delivery: the idempotency record and the delivery log.
CREATE TABLE public.webhook_deliveries (
  integration_id uuid NOT NULL,
  delivery_id text NOT NULL CHECK (char_length(delivery_id) BETWEEN 1 AND 300),
  user_id uuid NOT NULL,
  topic text NOT NULL CHECK (char_length(topic) BETWEEN 1 AND 100),
  platform_order_id text CHECK (char_length(platform_order_id) BETWEEN 1 AND 64),
  outcome text NOT NULL CHECK (outcome IN ('stored', 'stale', 'deleted', 'ignored', 'held')),
  body_bytes integer NOT NULL CHECK (body_bytes >= 0),
  received_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT webhook_deliveries_pkey PRIMARY KEY (integration_id, delivery_id),
  CONSTRAINT webhook_deliveries_integration_fkey FOREIGN KEY (integration_id, user_id)
    REFERENCES public.integrations (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX webhook_deliveries_integration_received_idx
  ON public.webhook_deliveries (integration_id, received_at DESC);
"""

# The webhook path's only way in before it knows whose delivery it holds: one integration
# by id, with the secrets that may still verify (an expired previous secret stays inside).
FUNCTIONS = """
CREATE FUNCTION public.app_webhook_target(p_id uuid)
RETURNS TABLE (
  user_id uuid, type text, domain text, is_active boolean,
  webhook_secret text, previous_webhook_secret text
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT i.user_id, i.type, i.domain, i.is_active, i.webhook_secret,
         CASE WHEN i.previous_secret_expires_at > now() THEN i.previous_webhook_secret END
  FROM public.integrations i
  WHERE i.id = p_id
$$;
ALTER FUNCTION public.app_webhook_target(uuid) OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_webhook_target(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_webhook_target(uuid) TO astra_app;
"""

POLICIES = """
ALTER TABLE public.orders ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.orders FORCE ROW LEVEL SECURITY;
ALTER TABLE public.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.webhook_deliveries FORCE ROW LEVEL SECURITY;

-- Orders are marked deleted, never removed by the app; deliveries change only their outcome.
GRANT SELECT, INSERT, UPDATE ON public.orders TO astra_app;
GRANT SELECT, INSERT, UPDATE (outcome) ON public.webhook_deliveries TO astra_app;

-- Everyone reads their own rows, admins all; only the owner's own context writes them
-- (the webhook path acts as the integration's owner).
CREATE POLICY orders_select ON public.orders FOR SELECT TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));
CREATE POLICY orders_insert ON public.orders FOR INSERT TO astra_app
  WITH CHECK (user_id = (SELECT public.app_user_id()));
CREATE POLICY orders_update ON public.orders FOR UPDATE TO astra_app
  USING (user_id = (SELECT public.app_user_id()))
  WITH CHECK (user_id = (SELECT public.app_user_id()));

CREATE POLICY webhook_deliveries_select ON public.webhook_deliveries FOR SELECT TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));
CREATE POLICY webhook_deliveries_insert ON public.webhook_deliveries FOR INSERT TO astra_app
  WITH CHECK (user_id = (SELECT public.app_user_id()));
CREATE POLICY webhook_deliveries_update ON public.webhook_deliveries FOR UPDATE TO astra_app
  USING (user_id = (SELECT public.app_user_id()))
  WITH CHECK (user_id = (SELECT public.app_user_id()));
"""


def upgrade() -> None:
    for script in (SCHEMA, FUNCTIONS, POLICIES):
        run_script(script)


def downgrade() -> None:
    run_script(
        """
        DROP FUNCTION public.app_webhook_target(uuid);
        DROP TABLE public.webhook_deliveries, public.orders;
        ALTER TABLE public.integrations
          DROP CONSTRAINT integrations_id_user_key,
          DROP CONSTRAINT integrations_previous_secret_pair,
          DROP COLUMN previous_secret_expires_at,
          DROP COLUMN previous_webhook_secret;
        """
    )
