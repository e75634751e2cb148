"""Pure functions from an Agent to the objects that serve it: no I/O, testable without a cluster."""
