"""A disposable lab target: PostgreSQL, a Consul double and a target root.

``Lab.up`` builds the drifted state the compliance suite audits and repairs,
and ``Lab.down`` removes every process and file it created.
"""

from mesh_compliance.lab.errors import LabError
from mesh_compliance.lab.lab import Lab

__all__ = ["Lab", "LabError"]
