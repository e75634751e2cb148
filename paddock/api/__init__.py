"""The paddock.dev API: the Agent resource and the CRD generated from it."""
