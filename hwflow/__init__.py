"""hwflow: quantized transformers and conformers from QKeras training to FPGA firmware via hls4ml."""

__version__ = "0.1.0"
