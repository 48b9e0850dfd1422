"""The Qt-free core of cnndesk.

Modules here never import Qt. Modules that need TensorFlow/Keras import it
inside functions or at their own top (``training``, ``inspection``,
``export``, ``project``), so the TF-free ones (``dataset``, ``architecture``,
``samples``, ``tasks``, ``errors``) stay cheap to import from any thread.
"""
