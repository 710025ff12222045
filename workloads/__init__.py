"""The business flows (tracker, saga, event sourcing): built in later issues."""
