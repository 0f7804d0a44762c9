"""Models: the text encoder, scoring formulas, and (later) trained heads and calibration."""
