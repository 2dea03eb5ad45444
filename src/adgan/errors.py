"""User-facing errors: one line that names the file or argument and what was expected."""


class AdganError(Exception):
    """Base class of every error the command line reports as a one-line message."""


class DataError(AdganError, ValueError):
    """A dataset file or folder is missing, truncated, corrupt or of the wrong shape."""


class CheckpointError(AdganError, ValueError):
    """A checkpoint is missing, unreadable, or made for another architecture."""


class ConfigError(AdganError, ValueError):
    """An argument, preset or option value is not one that is accepted."""


class TrainingDiverged(AdganError):
    """A training loss became NaN or exploded."""


class OutputError(AdganError, OSError):
    """An output file or folder cannot be written where it was asked for (a folder where a
    file goes, a path below a file, no permission): a failure of the file system, not of
    usage, as any OSError."""
