"""Test double of the Consul HTTP API for the lab. It is not Consul.

It serves the subset of the Consul HTTP API that the compliance checks call,
from memory and on a loopback address only. That subset covers ACL policies and
tokens with rule enforcement, the catalog, config entries, KV, intentions, and
one agent with its health data. Status codes and error texts follow the Consul releases set
by `version`. A control API under /_double/ lets tests add members and inject
faults.
"""

from .double import ConsulDouble

__all__ = ["ConsulDouble"]
