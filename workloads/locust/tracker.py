"""The tracker flow for Locust's web UI: ``locust -f workloads/locust/tracker.py`` (options in
``workloads/locust/flow.py``)."""

from workloads.locust.flow import flow_producer

TrackerProducer = flow_producer("tracker")
