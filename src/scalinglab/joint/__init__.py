"""The joint law L(N, P) on teacher/student cells over a widths x P grid: aggregation with compute
C = 6 N D, the fits by both methods, the compute-optimal frontier and the figures."""
