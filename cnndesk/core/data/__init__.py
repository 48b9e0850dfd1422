"""Images from folders to batches: reading and decoding, scanning a class-folder tree, the dataset and its
fair split, copies and look-alikes, file fixes with undo, the on-disk cache and the tf.data pipeline.
"""
