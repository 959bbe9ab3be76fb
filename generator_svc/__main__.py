"""`python -m generator_svc`: start the generator service."""

import sys

from common.server import run
from generator_svc.server import DEFINITION

if __name__ == "__main__":
    sys.exit(run(DEFINITION))
