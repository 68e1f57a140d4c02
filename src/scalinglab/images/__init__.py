"""The image experiment (Sharma & Kaplan's CIFAR-10 study on any image dataset): the ConvNet family,
its fast on-device training, quantile fits of loss and accuracy against N, and the figures."""
