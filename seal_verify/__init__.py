"""The offline verifier of the evidence bundle (seal-verify); never imports the server. It needs only this package,
``seal_protocol``, PyNaCl and (for time stamps) rfc3161-client — no server, no network, no database
(``docs/evidence.md``)."""

from seal_verify.verdict import BundleVerdict, Check, Status
from seal_verify.verify import verify_bundle

__all__ = ["BundleVerdict", "Check", "Status", "verify_bundle"]
