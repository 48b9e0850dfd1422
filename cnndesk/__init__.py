"""cnndesk: train a convolutional image classifier by pointing and clicking."""

__version__ = "0.1.0"
