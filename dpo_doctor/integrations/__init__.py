"""Trainer callbacks and tracker adapters: thin, they call scan and rules and own no logic.

`DoctorCallback` (callback.py) is loaded on first use: it subclasses transformers' TrainerCallback, and importing
this package must stay cheap.
"""

__all__ = ["DoctorCallback"]


def __getattr__(name: str):
    if name == "DoctorCallback":
        from dpo_doctor.integrations.callback import DoctorCallback

        return DoctorCallback
    raise AttributeError(f"module 'dpo_doctor.integrations' has no attribute {name!r}")
