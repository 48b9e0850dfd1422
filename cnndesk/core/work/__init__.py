"""The trained model put to work: trust (calibration and novelty measured on validation), the flag
for images unlike the training set, whole folders classified, sorted and undone.
"""
