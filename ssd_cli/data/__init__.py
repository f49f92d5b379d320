"""Images in: finding and decoding files, built-in datasets, scanning folders, in-memory inputs."""
