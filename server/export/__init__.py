"""The case's evidence bundle."""
