"""Every failure a user can cause is an :class:`EdgeInferError`, which the CLI prints on one line; others are bugs."""


class EdgeInferError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""


class InputError(EdgeInferError, ValueError):
    """Maps, labels, classes or options that are not what the API accepts."""


class DataFileError(InputError):
    """A data file that is missing, unreadable or not what its name says."""


class BundleError(EdgeInferError):
    """A model bundle that is missing, incomplete, tampered with or too new."""


class ProviderError(EdgeInferError):
    """An onnxruntime execution provider that was asked for but does not work."""


class OutputError(EdgeInferError, OSError):
    """An output that cannot be written (unwritable, full, or already there)."""


class Note(UserWarning):
    """Something the user should know that is not a problem (the CLI prints ``note: ...``)."""


class TooLargeError(DataFileError):
    """An input that would need more memory at once than the configured ceiling allows."""
