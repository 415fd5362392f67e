"""The debtor's path to a lifted seizure: a removal request (解除查封申请), the creditor's views, the judge's
decision, the remote disarm of every seal of the case, and the officer's confirmation on site.

- :mod:`~server.removal.state`: the request's states and its one transition function (pure);
- :mod:`~server.removal.models`: its tables (requests, proof files, the creditor's views, the disarm commands
  issued for it, its history);
- :mod:`~server.removal.proofs`: proof files checked by content and stored by their SHA-256;
- :mod:`~server.removal.service`: one function per business action before the decision, each writing its audit
  entry;
- :mod:`~server.removal.disarm`: the approval, the disarm to each seal, each seal's progress, and settling
  ``disarmed`` once each has acknowledged (:mod:`~server.removal.settler` runs it);
- :mod:`~server.removal.progress`: what each seal is shown as (its status), and how the record says where it stood;
- :mod:`~server.removal.waivers`: what the judge's decision to go without a seal's acknowledgement covers (only a
  seal that does not answer: its own word since takes precedence);
- :mod:`~server.removal.lifting`: the officer's confirmation on site, and the judge's decisions for a seal that never
  answers (lift without its acknowledgement, or withdraw the approval);
- :mod:`~server.removal.release`: unbinding a seal, by hand or by the lifting, with what its binding carried (its
  pending commands expire, its notices are revoked).
"""
