"""``python -m harness`` runs the brokerbench command line."""

from harness.cli import main

main()
