"""Many runs of the study: a run store keyed by settings, grids of cells, planning, backends, rebuilding."""
