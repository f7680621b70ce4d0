"""Training support: datasets from real footage, degradation generators, train/export loops.

``vsremaster.training.degrade`` holds the degradation generators (interlacing, noise,
compression, scratches, dust, flashes) as plain VapourSynth/numpy/FFmpeg functions: they make
the test and benchmark inputs with known ground truth, and later the training data. Nothing
here imports torch; the train/export loops that do will live in their own modules (extra
``train``).
"""
