"""The failure zoo: small DPO runs that each inject one known failure, to calibrate and test the rules.

`task` is the synthetic preference task (a grammar of arithmetic questions whose answers vary in correctness,
length and style), `sft` trains the tiny reference on it, `scenarios` says what each scenario injects, and
`build` trains them all (`dpo-doctor zoo build`).
"""
