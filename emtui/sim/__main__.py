"""``python -m emtui.sim``: run the simulator without the ``emtui`` entry point."""

import sys

from emtui.sim.command import main

if __name__ == "__main__":
    sys.exit(main())
