"""Setting up a court server: ``seal-server init`` writes its directory (settings, Mosquitto's configuration,
secrets)."""
