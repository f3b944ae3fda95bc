"""The workloads: each takes the run's context and returns its figures (name -> number or text)."""
