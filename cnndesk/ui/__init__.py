"""The Qt application. Modules here never import TensorFlow/Keras at top level:
only the engine thread does (``cnndesk.ui.engine``)."""
