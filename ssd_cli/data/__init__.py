"""Images in: finding and decoding files, built-in datasets, scanning folders, in-memory inputs, the
decoded training set, and image files streamed through a core scorer as they are decoded."""
