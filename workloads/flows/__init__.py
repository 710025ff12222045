"""Business flows: generated entry events, services with their own databases, checked
invariants. See ``workloads/flows/api.py`` for the shape every flow shares."""
