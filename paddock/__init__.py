"""paddock: AI coding agents in Kubernetes sandboxes, next to a local open-weight model."""
