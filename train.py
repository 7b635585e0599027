"""Train steering models: `python train.py --help` (the work is done in driving/train/)."""

import sys

from driving.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
