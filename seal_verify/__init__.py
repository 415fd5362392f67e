"""The offline verifier of the evidence bundle (seal-verify); never imports the server."""
