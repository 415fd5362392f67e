"""``python -m seal_agent`` is ``seal-agent``."""

import sys

from seal_agent.cli import main

sys.exit(main())
