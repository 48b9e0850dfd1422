"""Errors that are the user's to fix, with messages written for people."""


class UserError(Exception):
    """A problem with the user's input (a path, a dataset, a model file, an option).

    The message is shown as it is, in a dialog or on one stderr line, so it must
    say what is wrong and, where possible, what to do.
    """


class DatasetError(UserError):
    """The dataset folder cannot be used."""


class ArchitectureError(UserError):
    """The layer stack cannot be built.

    Args:
        message: what is wrong, naming the layer.
        layer_index: index of the offending layer in the stack, or None.
    """

    def __init__(self, message: str, layer_index: int | None = None):
        super().__init__(message)
        self.layer_index = layer_index
        self.rows: list = []  # shape rows of the layers before the offending one


class ModelFileError(UserError):
    """A model file cannot be read or is not a model cnndesk can use."""


class ProjectError(UserError):
    """A project folder cannot be read or written."""


class Cancelled(Exception):
    """Raised inside a long task when the user asked to stop it (the one kind of cancelling; ``progress.Stopped``
    is the one a training run catches itself). A message, when given, says what was left (shown as it is)."""
