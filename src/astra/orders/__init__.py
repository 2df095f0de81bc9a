"""Orders received from the stores' webhooks: storage and the read API."""
