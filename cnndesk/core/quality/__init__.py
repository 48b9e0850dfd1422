"""What may be wrong with the labels, found by training: out-of-sample label scores (k-fold).
"""
