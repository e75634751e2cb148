"""The runner: serves the session protocol (paddock.protocol) and drives the harness's agent."""
