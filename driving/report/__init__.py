"""The slimming report: what each trained model costs and how well it steers, measured here.

    python -m driving.report --models models/ [--export tflite] [--drive-precisions quick]
    report = stage.run(Path("models"))     # the same, as a library call (driving.report.stage)
    report = stage.run(ReportConfig(Path("models"), drive_precisions="quick"))

For every NAME.keras in the folder (written by train.py) it measures: total and trainable params;
.h5 size with and without optimizer state; .keras size; TFLite float32 / float16 / int8 sizes;
forward MACs per frame; CPU batch-1 latency (median, p99) of the Keras model (a compiled
tf.function, not model.predict) and of LiteRT (ai-edge-litert); validation MSE and MAE; training
seconds per epoch (from NAME.history.csv); each as a ratio to `base` when base is present. It
checks that every TFLite model agrees with Keras on validation frames within a stated tolerance.

Each model is scored on the validation split of the run that trained it, read from the record in
its file (or OUT/run.json), with its own preprocessing: never on frames it trained on. Models from
different runs are scored on their own splits, and the report says so. A model that cannot be
measured (a damaged file) is reported as such, and the others are measured.
Writes report.md, report.json and PNG charts into the folder; the .tflite files go there too.
Where each model looks (driving.saliency) is scored on frames of unseen tracks and drawn as
saliency.png (--saliency). With --drive-precisions SUITE the Keras model and every export are
driven over the same suite, and each export's autonomy is compared with the Keras model's track by
track: which file to flash. When run.json's package versions differ from requirements.lock, the
report names them.

    config   ReportConfig: the settings, declared once (the command line is generated from them)
    stage    run(config): which split each model is scored on, measuring each model (a ReportRow,
             driving/run.py), the sections
    measure  batch-1 latency, file sizes, the machine (shared with bench/ and the seed study)
    export   the LiteRT exports checked against Keras, and every export driven over a suite and
             paired by track with its Keras model
    render   ratios, the plain sentences, the charts and report.md's tables
    cli      the command line (parsed before TensorFlow loads: --help is instant)
"""
