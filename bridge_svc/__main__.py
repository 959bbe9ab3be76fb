"""`python -m bridge_svc`: start the bridge service."""

import sys

from bridge_svc.server import DEFINITION
from common.server import run

if __name__ == "__main__":
    sys.exit(run(DEFINITION))
