"""Recordings in the Udacity simulator's format.

reader.py      load and check them: rows used and skipped by reason, the time-block split
writer.py      write them as the simulator does
exclusions.py  excluded.json: the rows a person left out, which the reader honours
problems.py    what may be wrong, row by row: skipped rows, standing still, jumps, repeats
tools.py       new recordings from old ones: merge, cut, repath
browse.py      the recording browser's server (its page: static/)
__main__.py    python -m driving.data summary | view | merge | cut | repath
"""
