"""The scheduled report: run, saved audits, history, drift, waivers, data, notification."""
