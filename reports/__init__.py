"""Reports and the regression gate: built in a later issue."""
