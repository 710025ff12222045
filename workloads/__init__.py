"""Plug-ins: the sample flows (tracker, saga, event sourcing), found by the engine through the
``brokerbench.workloads`` entry points; the locustfiles and bundled suites that apply the engine.
Written against ``harness.flows.api``; nothing under harness/ imports this package."""
