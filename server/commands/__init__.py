"""Court → seal commands: signed by the court's key, published on the seal's ``cmd`` topic, answered by the seal.

- :mod:`server.commands.state`: the command's states and their one transition function;
- :mod:`server.commands.models`: the ``commands`` table;
- :mod:`server.commands.service`: issuing (sign, store pending), answers from the ingest, expiry, listing;
- :mod:`server.commands.dispatcher`: the MQTT publisher and the periodic expiry check;
- :mod:`server.commands.keys`: the court's signing key; :mod:`server.commands.cli`: ``seal-server court-key``.
"""

from server.commands.state import CommandState, transition

__all__ = ["CommandState", "transition"]
