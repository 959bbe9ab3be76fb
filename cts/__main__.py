import sys

from cts.main import main

sys.exit(main())
