"""Chaos: fault types (toxiproxy toxics, process signals, the harness's own load processes),
scenario files, the nemesis that applies a scenario's schedule and always heals, and the
per-fault figures of a run. See docs/chaos.md."""
