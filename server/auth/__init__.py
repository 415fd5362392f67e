"""People and what they may do: users and roles, passwords, login sessions, login throttling, and the access policy
(:mod:`server.auth.access`), which is the one place that decides who sees and does what."""
