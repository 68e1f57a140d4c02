"""Fitting laws shared by the experiments and the `scalinglab` command line: power laws (least
squares, quantile regression, cluster bootstrap), the broken power law, the joint law L(N, P) with
its compute-optimal frontier, and the implicit-bias analysis. They import only the core."""
