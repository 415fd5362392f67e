"""Notifications: of alarms, a durable outbox written with the alarm and a worker that delivers it by webhook; and
each user's in-app inbox.

- :mod:`server.notify.outbox`: the rows, written in the transaction that opens an alarm;
- :mod:`server.notify.webhook`: the :class:`Notifier` interface and its signed-webhook implementation;
- :mod:`server.notify.worker`: the thread that sends due rows, retries with back-off and records failures;
- :mod:`server.notify.inbox`: messages to users of the court (a removal request filed, decided), read in the app.
"""
