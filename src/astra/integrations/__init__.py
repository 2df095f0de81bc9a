"""Store connections: create, show, edit, remove."""
