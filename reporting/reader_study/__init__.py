"""Timing studies: protocol, assignment, blinded reads, feedback, analysis, power."""
