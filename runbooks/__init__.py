"""Recovery runbooks (scenarios, step engine, run records, recovery configuration) and drills."""
