"""Where a steering model looks: saliency maps, overlaid on the camera view, and measured.

    methods  VisualBackProp and SmoothGrad (a batch of model inputs -> maps in [0, 1]), the maps
             placed back on the camera frame, and scored against the headless simulator's labels
    frames   the frames looked at: the fixed, seeded set from unseen tracks every model is scored
             on (probe_frames), frames along a track, frames spread through a recording
    faithfulness  whether a map shows what the steering uses: its most salient pixels hidden,
             against the same mask moved elsewhere (check)
    draw     the heat map blended into a frame, PNGs and grids
    cli      the command line:

    python -m driving.saliency models/effnet.keras --track lake [--frames 8] [--method smoothgrad]
    python -m driving.saliency models/effnet.keras --suite quick --faithfulness
    python -m driving.saliency models/effnet.keras --data data/sim-lake --out runs/saliency

This file stays light (no TensorFlow): command lines name the methods before they load it.
"""

METHOD_NAMES = ("vbp", "smoothgrad")  # the keys of methods.METHODS, for choices in --help
