"""snnclf: train, evaluate and explain spiking neural network image classifiers."""
__version__ = "0.1.0"
