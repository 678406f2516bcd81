"""Load the compliance plugin for runs from a source checkout."""

pytest_plugins = ["mesh_compliance.plugin"]
