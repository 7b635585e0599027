"""Train steering models: `python train.py --help` (the work is done in driving/train.py)."""

import sys

from driving.train import main

if __name__ == "__main__":
    sys.exit(main())
