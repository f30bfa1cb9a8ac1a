"""The engine: the only code that runs a model (scoring pairs, sampling, KL).

Modules: `logprobs` (the log-prob function shared with the trainer, pair collation), `pairs` (batched,
length-bucketed scoring of preference pairs), `prefix` (the same scoring with each prompt encoded once, for
prompt-heavy data), `generate` (sampling and sample scoring), `loading`
(models and tokenizers from disk).
"""

from dpo_doctor.engine.logprobs import collate_pairs, pair_logps, sequence_logps, token_logps

__all__ = ["collate_pairs", "pair_logps", "sequence_logps", "token_logps"]
