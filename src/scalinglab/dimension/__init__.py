"""Intrinsic dimension of data: an exact k-NN pass (pruned where that pays), the TwoNN and MLE
estimators, the workflow stage that measures every manifold, and the reader of its table."""
