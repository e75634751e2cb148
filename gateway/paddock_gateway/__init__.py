"""The paddock gateway: sessions on Agents, kept in Redis, behind Kubernetes access control."""
