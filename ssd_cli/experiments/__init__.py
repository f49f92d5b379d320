"""The paper's experiments (`ssd benchmark`): protocol, settings and presets, runs, data, the results
and autoencoder stores, execution, planning, and reports beside the paper's tables."""
