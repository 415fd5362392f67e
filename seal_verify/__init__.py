"""The offline verifier of the court's evidence bundles (``docs/evidence.md``): needs only this package,
``seal_protocol`` and PyNaCl — no server, no network, no database."""

from seal_verify.verdict import BundleVerdict, Check, Status
from seal_verify.verify import verify_bundle

__all__ = ["BundleVerdict", "Check", "Status", "verify_bundle"]
