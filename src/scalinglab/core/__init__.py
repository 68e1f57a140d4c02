"""The shared core: config and its schema, io (atomic writes, Parquet with provenance), errors,
checkpoints, devices (device choice, GPU slots), plotting, seeding and the workflow-script adapter.
It imports no other part of the package."""
