"""Model files paddock makes itself: tiny random-weight GGUFs for tests and the kind demo."""
