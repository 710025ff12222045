"""The event-sourced account flow: commands -> events with an expected version -> a read model."""
