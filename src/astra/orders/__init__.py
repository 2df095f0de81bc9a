"""Orders: the one module that stores an order version (`writer`, used by webhooks and
syncs alike) and the sellers' order reads."""
