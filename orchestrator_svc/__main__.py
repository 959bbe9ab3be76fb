"""`python -m orchestrator_svc`: start the orchestrator service."""

import sys

from common.server import run
from orchestrator_svc.server import DEFINITION

if __name__ == "__main__":
    sys.exit(run(DEFINITION))
