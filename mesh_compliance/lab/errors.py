"""The one exception type the lab raises for a failed step."""


class LabError(Exception):
    """A lab step failed; the message names the value and what to do next."""
