"""Jobs: the queue on the app's own PostgreSQL (procrastinate), its workers, and the periodic
work on it: retention now, backfill and reconciliation next (issue 12)."""
