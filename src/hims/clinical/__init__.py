"""Clinical records: observations, conditions, allergies, prescriptions, labs, and the chart."""
