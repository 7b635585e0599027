"""Train steering models: `python train.py --help` (the work is done in driving/train.py)."""

from driving.train import main

if __name__ == "__main__":
    main()
