"""``python -m omnifield`` runs the CLI."""

import sys

from omnifield.cli import main

sys.exit(main())
