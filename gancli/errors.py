"""The one user-facing error type; the CLI turns it into `gan <cmd>: error: ...` and exit 1."""


class GancliError(Exception):
    """A problem the user can fix (bad file, wrong kind, no data, diverged training)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TrainingInterrupted(Exception):
    """Ctrl-C during training, raised after a resumable checkpoint was written."""

    def __init__(self, checkpoint):
        super().__init__(f"interrupted; resumable checkpoint at {checkpoint}")
        self.checkpoint = checkpoint
