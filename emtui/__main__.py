"""``python -m emtui`` runs the ``emtui`` command."""

import sys

from emtui.cli import main

sys.exit(main())
