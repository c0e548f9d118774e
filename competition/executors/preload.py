"""What the fold processes' fork server imports once (competition.executors.process): TensorFlow, Keras and
the training code, without starting TensorFlow's runtime. Each fold's process is forked from that server, so it
starts training within a second or two instead of importing TensorFlow again (about 5 s on 2 CPU cores)."""

from competition.runtime import import_tensorflow_only

import_tensorflow_only()

import competition.runs.prepare  # noqa: E402,F401  load_prepared, train_fold and what they import
import competition.engine.fold  # noqa: E402,F401
