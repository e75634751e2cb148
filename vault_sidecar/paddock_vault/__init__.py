"""The vault sidecar: the Pod's only way out, swapping stub credentials for real ones per host."""
