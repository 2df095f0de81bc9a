"""Database access: engines, the per-request transaction with its RLS context, migrations."""
