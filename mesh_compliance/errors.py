"""Exceptions that separate "could not decide" from "non-compliant".

A control that cannot observe the state it must judge raises ``Undecided``
(reported as ERROR). A control that observes a non-compliant state fails its
assert (reported as FAIL). The two are never mixed.
"""


class Undecided(Exception):
    """The control could not decide: the evidence it needs is unavailable."""


class ConsulUnreachable(Undecided):
    """No HTTP response from Consul: refused, timed out or dropped."""


class ConsulPermissionDenied(Undecided):
    """Consul returned 403 because the token lacks a permission."""


class ConsulTokenInvalid(Undecided):
    """The token the suite authenticates with is unknown to Consul or expired."""


class ConsulUnexpected(Undecided):
    """Consul returned a status the client cannot interpret."""


class TargetError(Undecided):
    """A command or file on the target node gave no usable result."""


class DatabaseUnreachable(Undecided):
    """The database host did not accept a TCP connection in time."""


class DatabaseInspectionFailed(Undecided):
    """The database responded, but the credentials used to inspect it were rejected or lacked a privilege."""


class FixError(Exception):
    """A fixer could not apply its change, for the reason in the message."""
