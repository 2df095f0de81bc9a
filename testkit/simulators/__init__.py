"""Simulated Shopify and WooCommerce stores on a real HTTPS server, for tests.

    async with StoreServer.running(tmp_path) as server:
        shop = server.add(SimulatedShopify("my-shop.myshopify.com", name="My Shop"))
        app = shop.install_app(["read_orders", "read_all_orders"])
        woo = server.add(SimulatedWooCommerce("cups.example.com"))
        key = woo.add_key("read_write")
        settings = server.settings(base)  # ASTRA_STORE_API_URL and the test CA, on `base`
        shop.delivery_client = astra_client  # where deliveries go (default: real HTTPS)
        await shop.fire("orders/create", next(iter(shop.orders.values())))

The server runs in the calling event loop: keep it running while anything calls the
stores (an in-process app, or `astra serve` given ASTRA_STORE_API_URL=server.url_template
and ASTRA_STORE_CA_BUNDLE=server.ca_file).
"""

from testkit.simulators.server import Receiver, StoreServer
from testkit.simulators.shopify import SimulatedShopify
from testkit.simulators.woocommerce import SimulatedWooCommerce

__all__ = ["Receiver", "SimulatedShopify", "SimulatedWooCommerce", "StoreServer"]
