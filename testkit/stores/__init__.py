"""Simulated Shopify and WooCommerce stores on a real HTTPS server, for tests."""
