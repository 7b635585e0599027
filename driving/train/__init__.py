"""The training stage: fit registered models on recordings, keep the best of each.

stage.py       run(config): split, decode, fit each model, write its files and run.json
distribute.py  the distribution strategies: one device, mirrored, multi-worker
cluster.py     a multi-worker run's workers: TF_CONFIG checked, which one writes, waiting with an end
callbacks.py   the Keras callbacks of a run: checkpoints, history, divergence, drive check
history.py     training histories and their loss plots
cli.py         the command line: `python train.py`, `python -m driving.train`
"""
