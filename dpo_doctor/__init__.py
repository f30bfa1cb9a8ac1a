"""dpo-doctor: diagnose DPO fine-tuning runs."""
__version__ = "0.1.0"
