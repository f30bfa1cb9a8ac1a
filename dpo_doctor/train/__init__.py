"""The built-in DPO trainer (`dpo-doctor train`) and its loss variants.

`trainer.train(TrainConfig(...))` writes a TRL-layout run; `losses.LOSSES` maps a loss name to a pure function.
Import the submodules directly; this package keeps torch out of `import dpo_doctor.train`.
"""
