"""Syncs and jobs: importing each store's orders through its API (backfill and
reconciliation) and their state, on the job queue in the app's own PostgreSQL
(procrastinate), its workers, and the periodic work on it (retention)."""
