"""Consultations (encounters): SOAP notes, signing, amendments; range-partitioned by year."""
