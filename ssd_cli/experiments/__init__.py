"""The paper's experiments: protocol, benchmark runs and plans, reports beside the paper's tables."""
