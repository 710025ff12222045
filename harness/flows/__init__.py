"""Business flows: generated entry events, services with their own databases, checked
invariants. See ``harness/flows/api.py`` for the shape every flow shares."""
