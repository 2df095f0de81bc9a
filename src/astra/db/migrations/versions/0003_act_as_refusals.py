"""One way to act as a user: `app_act_as(uuid)`, which the session lookup now calls too;
refused deliveries in the delivery log, with the reason.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The claims' shape (Supabase's `request.jwt.claims`, {"sub", "role"}) is written here
# alone. Transaction-local: the setting dies with the transaction. Not a privilege: the
# runtime role could call set_config itself; this only keeps the format in one place.
UPGRADE = """
-- Signed deliveries Astra will not act on (a replay under another topic, past the
-- platform's retry window, values the database cannot hold) are answered 2xx, so the
-- store stops sending them, and recorded with the reason, so the seller can see them.
ALTER TABLE public.webhook_deliveries
  DROP CONSTRAINT webhook_deliveries_outcome_check,
  ADD CONSTRAINT webhook_deliveries_outcome_check
    CHECK (outcome IN ('stored', 'stale', 'deleted', 'ignored', 'held', 'refused')),
  ADD COLUMN reason text CHECK (char_length(reason) BETWEEN 1 AND 300);

CREATE FUNCTION public.app_act_as(p_user_id uuid) RETURNS void
LANGUAGE sql VOLATILE SET search_path = '' AS $$
  SELECT set_config(
    'request.jwt.claims',
    json_build_object('sub', p_user_id, 'role', 'authenticated')::text,
    true
  );
$$;
REVOKE EXECUTE ON FUNCTION public.app_act_as(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_act_as(uuid) TO astra_app, astra_definer;

CREATE OR REPLACE FUNCTION public.app_authenticate(p_token_hash bytea)
RETURNS TABLE (id uuid, email text, role text)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  found_user record;
BEGIN
  SELECT u.id, u.email, u.role INTO found_user
  FROM public.sessions s JOIN public.users u ON u.id = s.user_id
  WHERE s.token_hash = p_token_hash AND s.expires_at > now();
  IF FOUND THEN
    PERFORM public.app_act_as(found_user.id);
    RETURN QUERY SELECT found_user.id, found_user.email, found_user.role;
  END IF;
END $$;
"""

DOWNGRADE = """
DELETE FROM public.webhook_deliveries WHERE outcome = 'refused';
ALTER TABLE public.webhook_deliveries
  DROP COLUMN reason,
  DROP CONSTRAINT webhook_deliveries_outcome_check,
  ADD CONSTRAINT webhook_deliveries_outcome_check
    CHECK (outcome IN ('stored', 'stale', 'deleted', 'ignored', 'held'));
CREATE OR REPLACE FUNCTION public.app_authenticate(p_token_hash bytea)
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
DROP FUNCTION public.app_act_as(uuid);
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
