"""Errors of the data path. Each names the dataset, backup id, location or key it
concerns; none ever holds a secret value."""

from drfleet.errors import DrfleetError


class DataPathError(DrfleetError):
    pass


class BackupNotFound(DataPathError):
    hint = "list backups with `drfleet backups list [DATASET]`"


class WrongRegion(DataPathError):
    hint = "send the task to the dataset's home region (drfleet does this when you use its commands)"


class IntegrityError(DataPathError):
    hint = "the copy is damaged: restore from another copy (`drfleet copies check` re-seeds it)"


class RestoreTargetInvalid(DataPathError):
    hint = "give --to a directory for files, a connection (env:VAR, file:PATH or a URL without password) for databases"
