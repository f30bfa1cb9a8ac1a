"""One module per screen; `base.ReportScreen` re-renders its screen whenever the app loads a new report."""
