"""Users, sessions and integrations, the runtime role, and row-level security.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text

from astra.db.sqlscript import run_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Roles are cluster-wide: create them once, tolerate a concurrent creator.
CREATE_ROLES = """
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'astra_app') THEN
    BEGIN
      CREATE ROLE astra_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  -- Owns the few SECURITY DEFINER functions; sees rows only through its own policies.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'astra_definer') THEN
    BEGIN
      CREATE ROLE astra_definer NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
  IF NOT pg_has_role(current_user, 'astra_definer', 'MEMBER') THEN
    EXECUTE format('GRANT astra_definer TO %I', current_user);
  END IF;
  EXECUTE format(
    'ALTER ROLE astra_app WITH LOGIN PASSWORD %L',
    current_setting('astra.app_password')
  );
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO astra_app', current_database());
END $$;
"""

SCHEMA = """
GRANT USAGE ON SCHEMA public TO astra_app, astra_definer;

CREATE TABLE public.users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL CHECK (email = lower(email) AND char_length(email) BETWEEN 3 AND 254),
  password_hash text NOT NULL,
  role text NOT NULL DEFAULT 'seller' CHECK (role IN ('admin', 'seller')),
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE public.sessions (
  token_hash bytea PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON public.sessions (user_id);

CREATE TABLE public.integrations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL REFERENCES public.users (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100 AND name = btrim(name)),
  type text NOT NULL CHECK (type IN ('shopify', 'woocommerce')),
  domain text NOT NULL CHECK (domain = lower(domain) AND char_length(domain) BETWEEN 3 AND 253),
  webhook_secret text NOT NULL CHECK (char_length(webhook_secret) >= 16),
  admin_access_token text,
  is_active boolean NOT NULL DEFAULT true,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT integrations_domain_key UNIQUE (domain),
  CONSTRAINT integrations_shopify_domain CHECK (
    type <> 'shopify' OR domain ~ '^[a-z0-9][a-z0-9-]*\\.myshopify\\.com$'
  )
);
-- Keyset pagination, newest first: admins over everything, sellers over their own.
CREATE INDEX integrations_created_idx ON public.integrations (created_at DESC, id DESC);
CREATE INDEX integrations_user_created_idx
  ON public.integrations (user_id, created_at DESC, id DESC);

CREATE FUNCTION public.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql SET search_path = '' AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END $$;
CREATE TRIGGER integrations_touch_updated_at BEFORE UPDATE ON public.integrations
  FOR EACH ROW EXECUTE FUNCTION public.touch_updated_at();
"""

# The acting user comes from Supabase's transaction-local `request.jwt.claims` ({"sub": ...}).
FUNCTIONS = """
CREATE FUNCTION public.app_user_id() RETURNS uuid
LANGUAGE sql STABLE SET search_path = '' AS $$
  SELECT nullif(nullif(current_setting('request.jwt.claims', true), '')::json ->> 'sub', '')::uuid
$$;

-- Admin rights come from the users table, never from the claims.
CREATE FUNCTION public.app_is_admin() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (
    SELECT 1 FROM public.users WHERE id = public.app_user_id() AND role = 'admin'
  )
$$;

-- Resolves a session token and sets the RLS context in the same round trip.
CREATE FUNCTION public.app_authenticate(p_token_hash bytea)
RETURNS TABLE (id uuid, email text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  found_user record;
BEGIN
  SELECT u.id, u.email, u.role INTO found_user
  FROM public.sessions s JOIN public.users u ON u.id = s.user_id
  WHERE s.token_hash = p_token_hash AND s.expires_at > now();
  IF FOUND THEN
    PERFORM set_config(
      'request.jwt.claims',
      json_build_object('sub', found_user.id, 'role', 'authenticated')::text,
      true
    );
    RETURN QUERY SELECT found_user.id, found_user.email, found_user.role;
  END IF;
END $$;

-- What sign-in needs to check a password, and nothing more.
CREATE FUNCTION public.app_login_lookup(p_email text)
RETURNS TABLE (id uuid, password_hash text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT u.id, u.password_hash FROM public.users u WHERE u.email = lower(p_email)
$$;

-- The browser set-up link may create the first account, and only while there is none.
CREATE FUNCTION public.app_create_first_admin(p_email text, p_password_hash text)
RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  new_id uuid;
BEGIN
  PERFORM pg_advisory_xact_lock(7412001);
  IF EXISTS (SELECT 1 FROM public.users) THEN
    RETURN NULL;
  END IF;
  INSERT INTO public.users (email, password_hash, role)
  VALUES (lower(p_email), p_password_hash, 'admin') RETURNING users.id INTO new_id;
  RETURN new_id;
END $$;

-- Operator commands (`astra user create`) run as the owner; these work whether or not
-- the owner bypasses RLS.
CREATE FUNCTION public.app_create_user(p_email text, p_password_hash text, p_role text)
RETURNS uuid
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
  INSERT INTO public.users (email, password_hash, role)
  VALUES (lower(p_email), p_password_hash, p_role) RETURNING id
$$;

-- Tells "not yours" (403) from "no such record" (404) without revealing the row.
CREATE FUNCTION public.app_integration_exists(p_id uuid) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT EXISTS (SELECT 1 FROM public.integrations WHERE id = p_id)
$$;

CREATE FUNCTION public.app_user_count() RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT count(*) FROM public.users
$$;

ALTER FUNCTION public.app_is_admin() OWNER TO astra_definer;
ALTER FUNCTION public.app_authenticate(bytea) OWNER TO astra_definer;
ALTER FUNCTION public.app_login_lookup(text) OWNER TO astra_definer;
ALTER FUNCTION public.app_create_first_admin(text, text) OWNER TO astra_definer;
ALTER FUNCTION public.app_create_user(text, text, text) OWNER TO astra_definer;
ALTER FUNCTION public.app_user_count() OWNER TO astra_definer;
ALTER FUNCTION public.app_integration_exists(uuid) OWNER TO astra_definer;

REVOKE EXECUTE ON FUNCTION
  public.app_is_admin(), public.app_authenticate(bytea), public.app_login_lookup(text),
  public.app_create_first_admin(text, text), public.app_create_user(text, text, text),
  public.app_user_count(), public.app_integration_exists(uuid)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  public.app_is_admin(), public.app_authenticate(bytea), public.app_login_lookup(text),
  public.app_create_first_admin(text, text), public.app_integration_exists(uuid)
TO astra_app;
"""

POLICIES = """
ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.users FORCE ROW LEVEL SECURITY;
ALTER TABLE public.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE public.integrations ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.integrations FORCE ROW LEVEL SECURITY;

GRANT SELECT ON public.users TO astra_app;
GRANT SELECT, INSERT, DELETE ON public.sessions TO astra_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.integrations TO astra_app;
GRANT SELECT, INSERT ON public.users TO astra_definer;
GRANT SELECT ON public.sessions, public.integrations TO astra_definer;

-- (SELECT f()) makes Postgres evaluate the function once per statement, not per row.
CREATE POLICY users_self_or_admin ON public.users FOR SELECT TO astra_app
  USING (id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));

CREATE POLICY sessions_own ON public.sessions FOR ALL TO astra_app
  USING (user_id = (SELECT public.app_user_id()))
  WITH CHECK (user_id = (SELECT public.app_user_id()));

CREATE POLICY integrations_select ON public.integrations FOR SELECT TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));
CREATE POLICY integrations_insert ON public.integrations FOR INSERT TO astra_app
  WITH CHECK (user_id = (SELECT public.app_user_id()));
CREATE POLICY integrations_update ON public.integrations FOR UPDATE TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()))
  WITH CHECK (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));
CREATE POLICY integrations_delete ON public.integrations FOR DELETE TO astra_app
  USING (user_id = (SELECT public.app_user_id()) OR (SELECT public.app_is_admin()));

-- The definer functions read what they need; nothing else is open to that role.
CREATE POLICY users_definer_read ON public.users FOR SELECT TO astra_definer USING (true);
CREATE POLICY users_definer_insert ON public.users FOR INSERT TO astra_definer
  WITH CHECK (true);
CREATE POLICY sessions_definer_read ON public.sessions FOR SELECT TO astra_definer
  USING (true);
CREATE POLICY integrations_definer_read ON public.integrations FOR SELECT TO astra_definer
  USING (true);
"""


def upgrade() -> None:
    op.execute(
        text("SELECT set_config('astra.app_password', :password, true)").bindparams(
            password=context.config.attributes["app_password"]
        )
    )
    for script in (CREATE_ROLES, SCHEMA, FUNCTIONS, POLICIES):
        run_script(script)


def downgrade() -> None:
    run_script(
        """
        DROP TABLE public.integrations, public.sessions, public.users;
        DROP FUNCTION public.app_integration_exists(uuid), public.app_user_count(),
          public.app_create_user(text, text, text),
          public.app_create_first_admin(text, text), public.app_login_lookup(text),
          public.app_authenticate(bytea), public.app_is_admin(), public.app_user_id(),
          public.touch_updated_at();
        REVOKE ALL ON SCHEMA public FROM astra_app, astra_definer;
        """
    )
    # The roles are cluster-wide and may serve other databases; only this database's grants go.
    run_script(
        "DO $$ BEGIN EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM astra_app', "
        "current_database()); END $$"
    )
