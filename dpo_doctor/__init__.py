"""dpo-doctor: diagnose DPO fine-tuning runs.

The Python API (the same code the `dpo-doctor` command runs; see the README's "Python API"):

    scan(ScanConfig(run_dir=..., data=..., ref=...))  run a scan; returns the report folder
    load_report(folder)                               the validated report.json and its tables (a ReportBundle)
    all_plots(bundle), trend_plots, curve_plots,      the report's Plotly figures (each Plot has .id, .title,
    histogram_plot, scatter_plot                      .fig: a plotly Figure a notebook shows), from a ReportBundle
    render_all(folder)                                report.html + report.md next to report.json
    DoctorCallback(...)                               diagnose while a transformers/TRL Trainer trains
    UserError                                         what every bad input raises (one line saying what to do)

Everything is imported on first use: `import dpo_doctor` loads neither torch nor transformers nor polars.
"""

__version__ = "0.1.0"

# name -> the module that defines it (imported on first access, PEP 562)
_EXPORTS = {
    "scan": "dpo_doctor.scan",  # the scan package is callable: dpo_doctor.scan(config) runs scan.pipeline.scan
    "ScanConfig": "dpo_doctor.scan.config",
    "load_report": "dpo_doctor.report",
    "ReportBundle": "dpo_doctor.report",
    "all_plots": "dpo_doctor.views.figures",
    "trend_plots": "dpo_doctor.views.figures",
    "curve_plots": "dpo_doctor.views.figures",
    "histogram_plot": "dpo_doctor.views.figures",
    "scatter_plot": "dpo_doctor.views.figures",
    "Plot": "dpo_doctor.views.figures",
    "render_all": "dpo_doctor.views",
    "DoctorCallback": "dpo_doctor.integrations.callback",
    "UserError": "dpo_doctor.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    import importlib

    if name not in _EXPORTS:
        raise AttributeError(f"module 'dpo_doctor' has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name])
    return module if name == "scan" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
