"""hls4ml extension layers of hwflow: one module per layer (IR class, Keras-2 handler, templates, passes)."""
