"""The order saga: Order, Inventory, Payment and Shipping services completing or compensating
each order, by choreography (``saga``) or through an orchestrator (``saga-orchestrated``)."""
