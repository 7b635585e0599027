"""Drive the Udacity simulator with a trained model: `python drive.py MODEL` (see driving/drive.py)."""

import sys

from driving.drive import main

if __name__ == "__main__":
    sys.exit(main())
