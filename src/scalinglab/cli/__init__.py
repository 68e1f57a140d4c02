"""The `scalinglab` command: fit, dimension, implicit-bias and import-tensorboard, each a module with
add_arguments(parser) and run(args)."""
