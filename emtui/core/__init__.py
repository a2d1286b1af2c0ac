"""The UI-free engine: connections, bus arbiter, register maps, planner, scanner, poller.

Nothing in this package may import Textual or Rich: the headless logger and the TUI share it.
"""
