"""python -m driving.saliency: where a model looks (driving/saliency/cli.py)."""

import sys

from driving.saliency.cli import main

if __name__ == "__main__":
    sys.exit(main())
