"""Running suites: expand broker x workload x repeat, execute each run, write its result."""
