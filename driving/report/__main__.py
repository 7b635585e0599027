"""python -m driving.report: the slimming report's command line (driving/report/cli.py)."""

import sys

from driving.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
