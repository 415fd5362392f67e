"""``python -m seal_verify case.zip``: the same as ``seal-verify``."""

import sys

from seal_verify.cli import main

sys.exit(main())
