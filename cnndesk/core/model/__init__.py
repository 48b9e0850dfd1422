"""The network and its files: the layer stack, pretrained backbones, model files from strangers
(limits, .keras, .h5, loading), labels, what each layer shows (taps, inspection, pictures),
calibration and exports.
"""
