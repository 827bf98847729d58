"""Escalation alerts for supervisors: rules over the labels stream, episodes, the alerts consumer."""
