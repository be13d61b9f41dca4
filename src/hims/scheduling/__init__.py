"""Appointments: booking, rescheduling, check-in; double booking refused by the database."""
