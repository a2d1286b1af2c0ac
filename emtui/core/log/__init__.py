"""Unattended logging: the worker, the CSV files, run state (locks, status, live file) and the
service unit."""
