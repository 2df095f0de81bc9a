"""Store connections: write-only API credentials, the connection's last check, the webhooks
Astra registered at the store; every secret an integration holds encrypted at rest; a store
claimed once per seller, and proven by at most one.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import json
from collections.abc import Callable

from alembic import context, op
from cryptography.fernet import Fernet
from sqlalchemy import text

from astra.db.sqlscript import run_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

SCHEMA = """
ALTER TABLE public.integrations
  -- Which credentials are stored (never what they are): the card and the API say so.
  ADD COLUMN credentials_kind text
    CHECK (credentials_kind IN ('shopify_app', 'shopify_token', 'woocommerce_key')),
  -- Fernet tokens of the credentials' JSON, of the Shopify app's client secret (which signs
  -- the webhooks registered through the API), and of the access token the client
  -- credentials grant last gave (it lasts about 24 hours).
  ADD COLUMN credentials text,
  ADD COLUMN app_client_secret text,
  ADD COLUMN access_token text,
  ADD COLUMN access_token_expires_at timestamptz,
  -- The last "Test connection": when, what went wrong (null: it worked), the shop's name.
  ADD COLUMN checked_at timestamptz,
  ADD COLUMN check_problem text CHECK (char_length(check_problem) <= 40),
  ADD COLUMN check_message text CHECK (char_length(check_message) <= 500),
  ADD COLUMN shop_name text CHECK (char_length(shop_name) <= 300),
  -- The registered webhooks at a glance, as last seen at the store: the worst of them.
  ADD COLUMN webhooks_status text CHECK (webhooks_status IN ('active', 'disabled', 'missing')),
  -- When working credentials for exactly this store last proved the seller holds it.
  ADD COLUMN proven_at timestamptz,
  ADD CONSTRAINT integrations_credentials_pair CHECK (
    (credentials_kind IS NULL) = (credentials IS NULL)
  ),
  ADD CONSTRAINT integrations_token_pair CHECK (
    (access_token IS NULL) = (access_token_expires_at IS NULL)
  ),
  -- When another seller proved the store with working credentials: this claim is not
  -- the store's connection (the card says so).
  ADD COLUMN superseded_at timestamptz;

-- A domain was unique across all sellers, so anyone could claim a store and block its real
-- owner, and the 409 told every seller which stores were connected. Now a seller connects
-- a store once; of all claims, at most one is proven (app_prove_store).
ALTER TABLE public.integrations
  DROP CONSTRAINT integrations_domain_key,
  ADD CONSTRAINT integrations_user_domain_key UNIQUE (user_id, domain);
CREATE UNIQUE INDEX integrations_proven_domain_key ON public.integrations (domain)
  WHERE proven_at IS NOT NULL;

-- Record that working credentials for exactly this store proved the caller's claim, and
-- mark the other sellers' unproven claims of the same store superseded (rows the caller
-- may not touch, hence a definer). False when another seller proved the store first.
CREATE FUNCTION public.app_prove_store(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  claimed record;
BEGIN
  SELECT i.id, i.domain INTO claimed FROM public.integrations i
  WHERE i.id = p_id
    AND (i.user_id = public.app_user_id() OR public.app_is_admin())
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN false;
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('astra-prove:' || claimed.domain));
  IF EXISTS (SELECT FROM public.integrations
             WHERE domain = claimed.domain AND proven_at IS NOT NULL AND id <> p_id) THEN
    RETURN false;
  END IF;
  UPDATE public.integrations SET proven_at = now(), superseded_at = NULL WHERE id = p_id;
  UPDATE public.integrations SET superseded_at = now()
  WHERE domain = claimed.domain AND id <> p_id AND superseded_at IS NULL;
  RETURN true;
END $$;
ALTER FUNCTION public.app_prove_store(uuid) OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_prove_store(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_prove_store(uuid) TO astra_app;
GRANT UPDATE (proven_at, superseded_at) ON public.integrations TO astra_definer;
CREATE POLICY integrations_definer_prove ON public.integrations FOR UPDATE TO astra_definer
  USING (true) WITH CHECK (true);

-- The order webhooks Astra registered at the store, and their state when last looked at.
CREATE TABLE public.store_webhooks (
  integration_id uuid NOT NULL,
  user_id uuid NOT NULL,
  topic text NOT NULL CHECK (char_length(topic) BETWEEN 1 AND 100),
  remote_id text NOT NULL CHECK (char_length(remote_id) BETWEEN 1 AND 300),
  status text NOT NULL CHECK (status IN ('active', 'disabled', 'missing')),
  address text NOT NULL CHECK (char_length(address) BETWEEN 1 AND 2000),
  registered_at timestamptz NOT NULL DEFAULT now(),
  checked_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT store_webhooks_pkey PRIMARY KEY (integration_id, topic),
  CONSTRAINT store_webhooks_integration_fkey FOREIGN KEY (integration_id, user_id)
    REFERENCES public.integrations (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE
);
ALTER TABLE public.store_webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.store_webhooks FORCE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.store_webhooks TO astra_app;
-- Owners and admins manage a store's webhooks, as they manage the integration.
CREATE POLICY store_webhooks_owner_or_admin ON public.store_webhooks FOR ALL TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()))
  WITH CHECK (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));

-- The webhook path's target now also carries the app's client secret: Shopify signs the
-- webhooks Astra registered with it. The secrets come out encrypted; the app decrypts.
DROP FUNCTION public.app_webhook_target(uuid);
CREATE FUNCTION public.app_webhook_target(p_id uuid)
RETURNS TABLE (
  user_id uuid, type text, domain text, is_active boolean,
  webhook_secret text, previous_webhook_secret text, app_client_secret text
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT i.user_id, i.type, i.domain, i.is_active, i.webhook_secret,
         CASE WHEN i.previous_secret_expires_at > now() THEN i.previous_webhook_secret END,
         i.app_client_secret
  FROM public.integrations i
  WHERE i.id = p_id
$$;
ALTER FUNCTION public.app_webhook_target(uuid) OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_webhook_target(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_webhook_target(uuid) TO astra_app;
"""

DOWNGRADE_SCHEMA = """
DROP POLICY integrations_definer_prove ON public.integrations;
REVOKE UPDATE (proven_at, superseded_at) ON public.integrations FROM astra_definer;
DROP FUNCTION public.app_prove_store(uuid);
DROP INDEX public.integrations_proven_domain_key;
-- Claims of one store by several sellers cannot all survive the old rule: keep the oldest.
ALTER TABLE public.integrations NO FORCE ROW LEVEL SECURITY;
DELETE FROM public.integrations i USING public.integrations older
  WHERE older.domain = i.domain AND (older.created_at, older.id) < (i.created_at, i.id);
ALTER TABLE public.integrations FORCE ROW LEVEL SECURITY;
ALTER TABLE public.integrations
  DROP CONSTRAINT integrations_user_domain_key,
  ADD CONSTRAINT integrations_domain_key UNIQUE (domain);
DROP FUNCTION public.app_webhook_target(uuid);
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
DROP TABLE public.store_webhooks;
ALTER TABLE public.integrations
  DROP CONSTRAINT integrations_token_pair,
  DROP CONSTRAINT integrations_credentials_pair,
  DROP COLUMN superseded_at, DROP COLUMN proven_at, DROP COLUMN shop_name,
  DROP COLUMN webhooks_status,
  DROP COLUMN check_message,
  DROP COLUMN check_problem, DROP COLUMN checked_at, DROP COLUMN access_token_expires_at,
  DROP COLUMN access_token, DROP COLUMN app_client_secret, DROP COLUMN credentials,
  DROP COLUMN credentials_kind;
"""

Row = dict[str, str | None]


def _rewrite_rows(columns: str, change: Callable[[Fernet, Row], Row]) -> None:
    """Rewrite every integration's secrets with `change`, as the owner. RLS is forced on the
    table (the owner too), so it is lifted for the rewrite, within this transaction."""
    fernet = Fernet(context.config.attributes["encryption_key"])
    connection = op.get_bind()
    connection.execute(text("ALTER TABLE public.integrations NO FORCE ROW LEVEL SECURITY"))
    rows = text(f"SELECT id, {columns} FROM public.integrations")  # noqa: S608
    for row in connection.execute(rows).mappings().all():
        values = change(fernet, dict(row))
        assignments = ", ".join(f"{name} = :{name}" for name in values)
        connection.execute(
            text(f"UPDATE public.integrations SET {assignments} WHERE id = :id"),  # noqa: S608
            {**values, "id": row["id"]},
        )
    connection.execute(text("ALTER TABLE public.integrations FORCE ROW LEVEL SECURITY"))


def _seal(fernet: Fernet, value: str | None) -> str | None:
    return None if value is None else fernet.encrypt(value.encode()).decode("ascii")


def _open(fernet: Fernet, value: str | None) -> str | None:
    return None if value is None else fernet.decrypt(value.encode("ascii")).decode()


def _encrypt_secrets(fernet: Fernet, row: Row) -> Row:
    token = _open(fernet, row["admin_access_token"])
    return {
        "webhook_secret": _seal(fernet, row["webhook_secret"]),
        "previous_webhook_secret": _seal(fernet, row["previous_webhook_secret"]),
        # The admin access token was already encrypted; it becomes the legacy app's
        # credentials: enough to check the store, not to verify webhooks it registers.
        "credentials_kind": None if token is None else "shopify_token",
        "credentials": _seal(
            fernet, None if token is None else json.dumps({"access_token": token})
        ),
    }


def _decrypt_secrets(fernet: Fernet, row: Row) -> Row:
    # Only a legacy access token has somewhere to go back to; other credentials are dropped.
    credentials = _open(fernet, row["credentials"])
    token = json.loads(credentials).get("access_token") if credentials else None
    return {
        "webhook_secret": _open(fernet, row["webhook_secret"]),
        "previous_webhook_secret": _open(fernet, row["previous_webhook_secret"]),
        "admin_access_token": _seal(fernet, token),
    }


def upgrade() -> None:
    run_script(SCHEMA)
    _rewrite_rows("webhook_secret, previous_webhook_secret, admin_access_token", _encrypt_secrets)
    run_script("ALTER TABLE public.integrations DROP COLUMN admin_access_token")


def downgrade() -> None:
    run_script("ALTER TABLE public.integrations ADD COLUMN admin_access_token text")
    _rewrite_rows("webhook_secret, previous_webhook_secret, credentials", _decrypt_secrets)
    run_script(DOWNGRADE_SCHEMA)
