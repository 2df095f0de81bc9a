"""Order webhooks from Shopify and WooCommerce: verify, record once, store the order."""
