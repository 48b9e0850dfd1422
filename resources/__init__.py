"""Icons, the desktop entry and the stylesheet, installed as ``cnndesk.resources``.

Loaded with ``importlib.resources`` so they are found in a source checkout, an
installed wheel and a PyInstaller bundle alike.
"""
