"""The seal's hardware edges, each behind an interface of :mod:`seal_agent.interfaces`: the PIR presence sensor
(:mod:`.pir`) and the lid's tamper switch (:mod:`.tamper`) through gpiozero, the spoken warning (:mod:`.speaker`)
through simpleaudio, the camera (:mod:`.camera`, OpenCV) with :mod:`.evidence`, which keeps its snapshots in the
journal, and the kernel's word on the wall clock (:mod:`.clock_state`: ``adjtimex``, the boot id).

Nothing is imported here: each device pulls in its own library (gpiozero, simpleaudio, OpenCV) only when used.
"""
