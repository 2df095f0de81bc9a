"""Syncs: importing each store's orders through its API, and their state."""
