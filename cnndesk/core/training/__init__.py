"""Fitting a model and keeping its runs: fit with its progress reports, devices, stopping rules,
two-stage transfer training, probes watched epoch by epoch, the run history, the model pool and
distributed training.
"""
