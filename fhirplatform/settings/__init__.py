"""Settings: base.py holds everything, read from the environment; local/test/production adjust defaults."""
