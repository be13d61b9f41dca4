"""The PHI access log: who touched which patient's record, when, from where."""
