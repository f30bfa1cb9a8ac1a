"""The severity vocabulary of diagnoses, shared by the rules that assign it and the views that sort by it."""

SEVERITIES = ("info", "warning", "error")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}  # the one ranking: info < warning < error
