from __future__ import annotations

import pytest

from testkit.stores import Store, connect_store
from tests.conftest import Account


@pytest.fixture
async def shopify_store(seller: Account) -> Store:
    return await connect_store(seller, "shopify", "linen-and-co.myshopify.com")


@pytest.fixture
async def woo_store(seller: Account) -> Store:
    return await connect_store(seller, "woocommerce", "cups.example.com")


@pytest.fixture
async def other_store(other_seller: Account) -> Store:
    """Another seller's Shopify store, with its own secret."""
    return await connect_store(other_seller, "shopify", "other-shop.myshopify.com")
