"""The suite's one named logger."""

import logging

from mesh_compliance.redact import RedactingFilter

logger = logging.getLogger("mesh_compliance")
logger.addFilter(RedactingFilter())
