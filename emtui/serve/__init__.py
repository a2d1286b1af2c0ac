"""The app in a browser (``emtui serve``): textual-serve with one session per bus and an
offline page."""
