"""Sessions timed side by side in one process: the interleaved measurement (interleaved.py),
races of deployments (race.py) and the tuning of a runtime's settings (tune.py) built on it."""
