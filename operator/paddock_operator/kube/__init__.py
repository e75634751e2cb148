"""The operator's access to the Kubernetes API, one job per module.

client    the async HTTP client (aiohttp): get, list, create, apply, patch, delete, events
errors    the API server's refusals as exceptions
paths     REST paths of collections and objects
priority  which waiting requests go first (the urgent() context and the PriorityGate)
"""
