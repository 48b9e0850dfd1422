"""File dialogs that ask for something to write: a folder that may not exist yet.

Qt's folder dialog (``QFileDialog.getExistingDirectory``) refuses a new name
with "Directory not found", so a user could not type the name of a new project
or SavedModel folder. ``ask_folder_for_writing`` takes an existing folder or a
new name in an existing folder; it creates nothing (the caller writes there).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QDialog, QFileDialog, QWidget


class NewFolderDialog(QFileDialog):
    """A folder dialog that also accepts the name of a folder to be made."""

    def __init__(self, parent: QWidget | None, title: str, start: str):
        super().__init__(parent, title, start)
        self.setObjectName("newFolderDialog")
        self.setFileMode(QFileDialog.FileMode.Directory)
        self.setOption(QFileDialog.Option.ShowDirsOnly, True)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)  # accept() below must run
        self.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        self.setLabelText(QFileDialog.DialogLabel.Accept, "Choose")
        self.chosen: str | None = None

    def accept(self) -> None:
        files = self.selectedFiles()
        if files:
            path = Path(files[0])
            if not path.exists() and path.parent.is_dir():
                self.chosen = str(path)
                QDialog.accept(self)  # QFileDialog.accept would say "Directory not found"
                return
        super().accept()
        if self.result() == QDialog.Accepted and self.selectedFiles():
            self.chosen = self.selectedFiles()[0]


def ask_folder_for_writing(parent: QWidget | None, title: str, start: str) -> str | None:
    """An existing folder or a new folder's path (not created); None when cancelled."""
    dialog = NewFolderDialog(parent, title, start)
    if dialog.exec() != QDialog.Accepted:
        return None
    return dialog.chosen
