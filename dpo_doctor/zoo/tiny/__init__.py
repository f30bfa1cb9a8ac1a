"""The tiny zoo: a synthetic arithmetic preference task, a tiny SFT reference, one run per injected failure.

`models` builds tiny tokenizers and causal LMs from config (re-exported here: `from dpo_doctor.zoo import tiny;
tiny.build_model(...)`, used by the demo, the tests and the benchmarks), `task` is the task, `sft` the reference,
`scenarios` what each run injects, `build` trains them (`dpo-doctor zoo build`), `demo` is `dpo-doctor demo`.
"""

from dpo_doctor.zoo.tiny.models import CHAT_TEMPLATE, SPECIAL, build_model, build_tokenizer, save

__all__ = ["CHAT_TEMPLATE", "SPECIAL", "build_model", "build_tokenizer", "save"]
