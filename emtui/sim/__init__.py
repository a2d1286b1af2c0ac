"""A simulated RS-485 bus of EM6400NG meters, served over a pty or TCP."""
