"""The teacher/student data-manifold experiment (Sharma & Kaplan 2022): random teacher networks of
known dimension d, student MLPs of many widths trained as batched ensembles, and 4/alpha against d."""
