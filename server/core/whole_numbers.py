"""The court's own records hold whole numbers only: an evidence bundle's JSON is canonical, integers only
(``seal-verify`` refuses a number with a fraction or an exponent), and an alarm's details or an audit entry go into
every later bundle of their case. A ``float`` there — a setting read as ``60.0`` — made each such bundle fail its
check. :func:`whole_numbers` is applied where such records are written (:class:`server.alarms.models.Alarm`,
:func:`server.audit.service.record_audit`) and where a bundle's alarms are written (for rows stored before)."""

from __future__ import annotations

import logging
import math
from typing import Any

logger = logging.getLogger(__name__)


def whole_numbers(value: Any, *, what: str) -> Any:
    """``value`` (JSON-like) with each ``float`` made an ``int``: a whole one exactly; one with a fraction (a defect
    of the code that wrote it, logged with ``what``) rounded; one that is no number (NaN, infinite) made ``None``."""
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        whole = round(value) if math.isfinite(value) else None
        logger.error("%s: the number %r is no whole number; kept as %r (records hold whole ones)", what, value, whole)
        return whole
    if isinstance(value, dict):
        return {key: whole_numbers(item, what=what) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [whole_numbers(item, what=what) for item in value]
    return value
