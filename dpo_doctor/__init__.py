"""dpo-doctor: diagnose DPO fine-tuning runs."""
__version__ = "0.1.0"
__all__ = ["DoctorCallback", "__version__"]


def __getattr__(name: str):
    """`from dpo_doctor import DoctorCallback` without importing transformers on `import dpo_doctor`."""
    if name == "DoctorCallback":
        from dpo_doctor.integrations.callback import DoctorCallback

        return DoctorCallback
    raise AttributeError(f"module 'dpo_doctor' has no attribute {name!r}")
