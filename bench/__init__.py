"""Benchmarks. Each prints its figures and ends with one machine-readable summary line; claims are
ratios within one run on one machine, never absolute numbers from elsewhere."""
