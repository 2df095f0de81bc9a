"""The stores themselves: their addresses today; the clients of their APIs next."""
