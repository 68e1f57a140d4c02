"""The joint law L(N, P) = E + A N^-alpha + B P^-beta: data checks, the variable-projection and
Chinchilla fitters, bootstrap CIs, and the compute-optimal frontier."""
