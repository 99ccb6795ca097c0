"""What the decision log raises."""


class DecisionLogError(Exception):
    """The decision log cannot be opened, written or read."""


class DecisionLogKeyError(DecisionLogError):
    """The key is missing, malformed or not the one a row was sealed with."""


class DecisionLogUnavailable(DecisionLogError):
    """The backend cannot be reached, failed, or did not answer in time: the log is not ready."""


class DecisionLogIntegrityError(DecisionLogError):
    """A sealed row fails authentication: it was altered or moved from another row."""
