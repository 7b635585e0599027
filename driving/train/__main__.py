"""`python -m driving.train`: the same command line as `python train.py`."""

import sys

from driving.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
