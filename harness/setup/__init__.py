"""``brokerbench setup``: fetch and cache the broker runtimes the local stack needs."""
