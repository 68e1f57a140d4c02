"""Solvable linear random-feature models (Bahri et al. 2021; Bordelon et al. 2024): exact sampling,
gradient descent in closed form, the time, model and data bottleneck exponents against theory."""
