"""The saga flow for Locust's web UI: ``locust -f workloads/locust/saga.py`` (options in
``workloads/locust/flow.py``)."""

from workloads.locust.flow import flow_producer

SagaProducer = flow_producer("saga")
