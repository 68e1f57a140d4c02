"""Implicit bias in the teacher/student perceptron (D'Amico, Bocchi & Negri): the problem, its
fixed-norm minimisers over a grid of norms, checks against theory, and the workflow stage."""
