"""The load engine: open-loop schedules and the Locust users that follow them."""
