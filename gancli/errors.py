"""The user-facing outcomes that are not success: an error (exit 1), a usage error found past the
option parser (2), Ctrl-C (130), a quality gate (3)."""


class GancliError(Exception):
    """A problem the user can fix (bad file, wrong kind, no data, diverged training)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self):  # whole across processes (torchrun's ranks share rank 0's errors)
        return type(self), (self.message, self.hint)


class UsageError(GancliError):
    """A bad command line that the option parser cannot see: a config file's unknown key, wrong type
    or out-of-range value. Exit 2, like the parser's own."""


class TrainingInterrupted(Exception):
    """Ctrl-C during training, raised after a resumable checkpoint was written; `next_step` says how to
    continue (default: `gan resume CHECKPOINT`)."""

    def __init__(self, checkpoint, next_step: str | None = None):
        super().__init__(f"interrupted; resumable checkpoint at {checkpoint}")
        self.checkpoint = checkpoint
        self.next_step = next_step or f"continue with `gan resume {checkpoint}`"


class QualityFailed(Exception):
    """A result that misses a quality gate or regressed past a tolerance, raised after the result
    was printed; the CLI exits 3, which CI scripts tell from an error (1) and a usage error (2)."""

    def __init__(self, failures: list[str], what: str = "quality gate failed"):
        super().__init__(f"{what}: {', '.join(failures)}")
        self.failures = failures
