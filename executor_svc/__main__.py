"""`python -m executor_svc`: start the executor service."""

import sys

from common.server import run
from executor_svc.server import DEFINITION

if __name__ == "__main__":
    sys.exit(run(DEFINITION))
