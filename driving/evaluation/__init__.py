"""Judging a model by how it drives: the closed loop against the headless simulator
(closed_loop.py) and its figures (metrics.py), suites of unseen worlds (suites.py) and seed
studies (seeds.py)."""
