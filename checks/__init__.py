"""Compliance controls: one module per area, one test function per control."""
