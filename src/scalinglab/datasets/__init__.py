"""Image datasets shared by the images, deep-net and dimension experiments: where they come from
(torchvision with checksums, local folders, packaged ones) and how they are used in memory."""
