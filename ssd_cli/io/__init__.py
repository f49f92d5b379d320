"""Files out and in: model files, atomic writes, score files, HTML reports, model descriptions."""
