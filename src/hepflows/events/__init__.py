"""Event data: the HIGGS layout, the physics event generator and file input/output."""
