"""The event-sourced account flow for Locust's web UI:
``locust -f workloads/locust/eventsourcing.py`` (options in ``workloads/locust/flow.py``)."""

from workloads.locust.flow import flow_producer

EventSourcingProducer = flow_producer("eventsourcing")
