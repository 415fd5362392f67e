"""Seals and cases: the registry (cases, seals, their bindings), the seals' and the server's MQTT accounts, and the
broker's password and ACL files made from them.

- :mod:`~server.seals.models`: the tables (cases, seals, seal_bindings, mqtt_accounts);
- :mod:`~server.seals.registry`: cases, seals and bindings;
- :mod:`~server.seals.provisioning`: MQTT accounts and the broker files;
- :mod:`~server.seals.broker_files`: Mosquitto's password and ACL file formats.
"""
