"""The job queue on the same database: procrastinate's own schema, what the runtime role
needs of it, and the delivery log's retention through one definer function.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from importlib.metadata import version

from procrastinate.schema import SchemaManager

from astra.db.sqlscript import run_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# procrastinate's functions are not definers: they run with the caller's rights, so the
# runtime role needs the rows they touch. Workers, periodic defers and jobs are written
# and deleted (registration, heartbeats, finishing with delete_jobs, pruning old jobs);
# events are only appended by triggers and read by the stalled-job and old-job queries,
# and go with their job through the foreign key's cascade, which runs as the owner.
GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE
  ON public.procrastinate_jobs, public.procrastinate_workers,
     public.procrastinate_periodic_defers
  TO astra_app;
GRANT SELECT, INSERT ON public.procrastinate_events TO astra_app;
-- bigserial ids take nextval() with the inserter's rights.
GRANT USAGE ON SEQUENCE public.procrastinate_jobs_id_seq,
  public.procrastinate_periodic_defers_id_seq, public.procrastinate_events_id_seq
  TO astra_app;
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'procrastinate\\_%'
  LOOP
    EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO astra_app', f);
  END LOOP;
END $$;
"""

# Jobs act as the integration's owner. The queue carries no authority (the runtime role
# writes it freely, as every worker must), so a job names only the integration, and its
# owner is read here at run time, as the webhook path reads its target's.
OWNER = """
CREATE FUNCTION public.app_integration_owner(p_id uuid) RETURNS uuid
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' AS $$
  SELECT i.user_id FROM public.integrations i WHERE i.id = p_id
$$;
ALTER FUNCTION public.app_integration_owner(uuid) OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_integration_owner(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_integration_owner(uuid) TO astra_app;
"""

# Deliveries past their retention go in batches, oldest first, through a definer: the
# runtime role keeps no DELETE on the delivery log (it is also the idempotency record a
# request must never erase), and whatever it asks, rows younger than a day stay and no
# call removes more than 10,000.
RETENTION = """
CREATE INDEX webhook_deliveries_received_idx ON public.webhook_deliveries (received_at);

CREATE FUNCTION public.app_prune_deliveries(p_retention_days integer, p_batch integer)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = '' AS $$
DECLARE
  removed integer;
BEGIN
  IF p_retention_days < 1 OR p_batch < 1 THEN
    RAISE EXCEPTION 'retention of at least a day and a batch of at least one row';
  END IF;
  DELETE FROM public.webhook_deliveries d
  WHERE (d.integration_id, d.delivery_id) IN (
    SELECT o.integration_id, o.delivery_id FROM public.webhook_deliveries o
    WHERE o.received_at < now() - make_interval(days => p_retention_days)
    ORDER BY o.received_at LIMIT least(p_batch, 10000)
  );
  GET DIAGNOSTICS removed = ROW_COUNT;
  RETURN removed;
END $$;
ALTER FUNCTION public.app_prune_deliveries(integer, integer) OWNER TO astra_definer;
REVOKE EXECUTE ON FUNCTION public.app_prune_deliveries(integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.app_prune_deliveries(integer, integer) TO astra_app;

-- The definer sees, and deletes, only deliveries older than a day.
GRANT SELECT, DELETE ON public.webhook_deliveries TO astra_definer;
CREATE POLICY webhook_deliveries_definer_prune_read ON public.webhook_deliveries
  FOR SELECT TO astra_definer USING (received_at < now() - interval '1 day');
CREATE POLICY webhook_deliveries_definer_prune ON public.webhook_deliveries
  FOR DELETE TO astra_definer USING (received_at < now() - interval '1 day');
"""

# Whatever procrastinate made, found by the prefix all its objects carry (the one
# astra.db.tables.include_name leaves out of the schema comparison), not listed again here.
DROP_QUEUE = """
DO $$
DECLARE
  item record;
BEGIN
  FOR item IN
    SELECT c.relname FROM pg_class c
    WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
      AND c.relname LIKE 'procrastinate\\_%'
  LOOP
    EXECUTE format('DROP TABLE public.%I CASCADE', item.relname);
  END LOOP;
  FOR item IN
    SELECT p.oid::regprocedure AS f FROM pg_proc p
    WHERE p.pronamespace = 'public'::regnamespace AND p.proname LIKE 'procrastinate\\_%'
  LOOP
    EXECUTE format('DROP FUNCTION %s', item.f);
  END LOOP;
  FOR item IN
    SELECT t.typname FROM pg_type t
    WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'c')
      AND t.typname LIKE 'procrastinate\\_%'
  LOOP
    EXECUTE format('DROP TYPE public.%I', item.typname);
  END LOOP;
END $$;
"""


def upgrade() -> None:
    # The installed package's own schema, not a copy: its unqualified names land in public.
    run_script("SET LOCAL search_path = public")
    run_script(SchemaManager.get_schema())
    run_script("RESET search_path")
    # Which release made it: a later procrastinate brings its own migrations, chosen by this.
    run_script(
        "COMMENT ON TABLE public.procrastinate_jobs IS "
        f"'procrastinate {version('procrastinate')} schema'"
    )
    run_script(GRANTS)
    run_script(OWNER)
    run_script(RETENTION)


def downgrade() -> None:
    run_script(
        """
        DROP POLICY webhook_deliveries_definer_prune ON public.webhook_deliveries;
        DROP POLICY webhook_deliveries_definer_prune_read ON public.webhook_deliveries;
        REVOKE SELECT, DELETE ON public.webhook_deliveries FROM astra_definer;
        DROP FUNCTION public.app_prune_deliveries(integer, integer);
        DROP INDEX public.webhook_deliveries_received_idx;
        DROP FUNCTION public.app_integration_owner(uuid);
        """
    )
    run_script(DROP_QUEUE)
