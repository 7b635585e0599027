"""Recordings in the Udacity simulator's format: reader.py loads and checks them, writer.py writes
them, `python -m driving.data summary` (__main__.py) reports on them."""
