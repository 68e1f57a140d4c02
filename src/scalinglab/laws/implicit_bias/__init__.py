"""The implicit-bias laws of D'Amico, Bocchi & Negri (arXiv:2505.13230): gamma1, gamma2 and
lambda_opt from (P, seed, norm, error) rows, and the figures the perceptron and the deep nets share."""
