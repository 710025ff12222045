"""Faults (toxiproxy, process signals), scenarios and the nemesis: built in a later issue."""
