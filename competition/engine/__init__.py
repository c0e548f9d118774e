"""The training engine (Keras): batches, callbacks, frozen-backbone features, and one fold's phases."""
