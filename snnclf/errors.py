"""The one exception type for mistakes a user can fix; the CLI prints it as one line, exit 2."""


class UsageError(Exception):
    """Bad input: the message says what is wrong and what to do."""


class NonFiniteLoss(UsageError):
    """The loss became NaN or infinite: training cannot go on from there."""


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving ``last.pt``; exit with 128 + signum."""

    def __init__(self, signum):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum
