"""`python -m npmnv2.cli`: the `npmnv2` command."""

import sys

from . import main

sys.exit(main())
