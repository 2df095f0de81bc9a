"""Astra Integrations: store connections and their order webhooks."""
