"""Recordings to MP4 (writer.py); `python -m driving.video DIR` is the command line (__main__.py)."""
