"""Sign-in limits shared by every worker and host: attempts in a table only definer
functions reach.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from astra.db.sqlscript import run_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# One row per sign-in or set-up attempt that failed or is still being checked; a success
# deletes its rows. The account is SHA-256 of the lowercased email (NULL for a set-up
# link): no email and no password is ever stored.
SCHEMA = """
CREATE TABLE public.sign_in_attempts (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  account_hash bytea CHECK (octet_length(account_hash) = 32),
  address text NOT NULL CHECK (char_length(address) BETWEEN 1 AND 255),
  attempted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_attempts_address_idx ON public.sign_in_attempts (address, attempted_at);
CREATE INDEX sign_in_attempts_account_idx
  ON public.sign_in_attempts (account_hash, address, attempted_at);
-- Pruning takes the oldest first.
CREATE INDEX sign_in_attempts_attempted_idx ON public.sign_in_attempts (attempted_at);
"""

FUNCTIONS = """
-- Count one attempt before its password is checked, unless the client is over a limit.
-- Over one: retry_after, the seconds until the attempt that filled it leaves the window,
-- and nothing is counted. Else: the new attempt's id and the account's failures over all
-- addresses (at most p_count_up_to), from which the app computes the slow-down.
CREATE FUNCTION public.app_sign_in_begin(
  p_account_hash bytea, p_address text, p_window_seconds integer,
  p_max_per_account integer, p_max_per_address integer, p_count_up_to integer
)
RETURNS TABLE (attempt_id bigint, retry_after double precision, account_failures integer)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  since timestamptz := now() - make_interval(secs => p_window_seconds);
  filled_at timestamptz;
  failures integer;
  new_id bigint;
BEGIN
  -- One attempt per address at a time: concurrent guesses cannot pass a limit together.
  PERFORM pg_advisory_xact_lock(7412002, hashtext(p_address));
  -- A bounded batch of expired rows per attempt: each attempt adds at most one, so the
  -- table holds little beyond the window. Rows another pruner holds are skipped, not waited
  -- for.
  DELETE FROM public.sign_in_attempts d WHERE d.id IN (
    SELECT a.id FROM public.sign_in_attempts a WHERE a.attempted_at <= since
    ORDER BY a.attempted_at LIMIT 20 FOR UPDATE SKIP LOCKED
  );
  SELECT max(filled.attempted_at) INTO filled_at FROM (
    (SELECT a.attempted_at FROM public.sign_in_attempts a
     WHERE a.address = p_address AND a.attempted_at > since
     ORDER BY a.attempted_at DESC OFFSET p_max_per_address - 1 LIMIT 1)
    UNION ALL
    (SELECT a.attempted_at FROM public.sign_in_attempts a
     WHERE a.account_hash = p_account_hash AND a.address = p_address AND a.attempted_at > since
     ORDER BY a.attempted_at DESC OFFSET p_max_per_account - 1 LIMIT 1)
  ) AS filled (attempted_at);
  IF filled_at IS NOT NULL THEN
    RETURN QUERY SELECT NULL::bigint,
      extract(epoch FROM filled_at + make_interval(secs => p_window_seconds) - now())::float8,
      NULL::integer;
    RETURN;
  END IF;
  SELECT count(*) INTO failures FROM (
    SELECT FROM public.sign_in_attempts a
    WHERE a.account_hash = p_account_hash AND a.attempted_at > since LIMIT p_count_up_to
  ) AS recent;
  INSERT INTO public.sign_in_attempts (account_hash, address)
  VALUES (p_account_hash, p_address) RETURNING id INTO new_id;
  RETURN QUERY SELECT new_id, NULL::float8, failures;
END $$;

-- A sign-in succeeded: that account's failures from that address are forgiven.
CREATE FUNCTION public.app_sign_in_clear(p_account_hash bytea, p_address text) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
  DELETE FROM public.sign_in_attempts WHERE account_hash = p_account_hash AND address = p_address
$$;

-- An attempt that was not a refusal (a right set-up link, an outage) counts for nothing.
CREATE FUNCTION public.app_sign_in_forget(p_attempt_id bigint) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
  DELETE FROM public.sign_in_attempts WHERE id = p_attempt_id
$$;

ALTER FUNCTION public.app_sign_in_begin(bytea, text, integer, integer, integer, integer)
  OWNER TO astra_definer;
ALTER FUNCTION public.app_sign_in_clear(bytea, text) OWNER TO astra_definer;
ALTER FUNCTION public.app_sign_in_forget(bigint) OWNER TO astra_definer;

REVOKE EXECUTE ON FUNCTION
  public.app_sign_in_begin(bytea, text, integer, integer, integer, integer),
  public.app_sign_in_clear(bytea, text), public.app_sign_in_forget(bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
  public.app_sign_in_begin(bytea, text, integer, integer, integer, integer),
  public.app_sign_in_clear(bytea, text), public.app_sign_in_forget(bigint)
TO astra_app;
"""

# No grant and no policy for astra_app: the functions above are its only way in.
POLICIES = """
ALTER TABLE public.sign_in_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.sign_in_attempts FORCE ROW LEVEL SECURITY;

-- UPDATE only for the row locks of pruning's FOR UPDATE SKIP LOCKED: the definer never
-- changes a row.
GRANT SELECT, INSERT, UPDATE, DELETE ON public.sign_in_attempts TO astra_definer;
CREATE POLICY sign_in_attempts_definer ON public.sign_in_attempts FOR ALL TO astra_definer
  USING (true) WITH CHECK (true);
"""


def upgrade() -> None:
    for script in (SCHEMA, FUNCTIONS, POLICIES):
        run_script(script)


def downgrade() -> None:
    run_script(
        """
        DROP FUNCTION public.app_sign_in_forget(bigint), public.app_sign_in_clear(bytea, text),
          public.app_sign_in_begin(bytea, text, integer, integer, integer, integer);
        DROP TABLE public.sign_in_attempts;
        """
    )
