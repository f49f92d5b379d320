"""The method: networks, objectives, training (Algorithm 1), patches, presets and scoring."""
