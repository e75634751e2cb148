"""The reference coding agent: a short tool loop against the Pod's OpenAI-compatible model."""
