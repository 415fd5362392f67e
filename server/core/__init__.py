"""Foundations every other package stands on: the tables' base and column types (:mod:`~server.core.base`),
engines and sessions (:mod:`~server.core.db`), and the loop of the periodic workers (:mod:`~server.core.rounds`).
It imports no other package of the server.
"""
