"""The paddock operator: reconciles Agent resources into sandbox Pods (kopf)."""
