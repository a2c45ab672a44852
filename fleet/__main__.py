"""`python -m fleet`: the same CLI as the `fleet` console script."""

import sys

from fleet.cli import main

sys.exit(main())
