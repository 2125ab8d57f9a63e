"""`python -m orchestrator.engine.replica serve --id ID --port PORT --data DIR ...`."""

import sys

from orchestrator.engine.replica.cli import main

sys.exit(main())
