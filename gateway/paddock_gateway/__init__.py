"""The gateway: sessions with agents, kept in Redis, that survive restarts of the agent's Pod."""
