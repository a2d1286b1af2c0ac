"""Commissioning checks (``emtui check``): capture a window of values, judge the wiring."""
