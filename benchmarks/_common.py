"""Shared set-up of the scan benchmarks: a tokenizer, a reference model, perturbed checkpoints and pairs.

Everything is built locally from config (no hub): a synthetic Zipfian language of a few thousand pseudo-words
(so a byte-level BPE trained on it really fills a 2-4k vocabulary and words cost 1-3 tokens, as in real text), a
small Llama from `dpo_doctor.zoo.tiny`, K checkpoints = the reference plus small Gaussian perturbations saved as
`checkpoint-N/` dirs (full safetensors weights, as a TRL run saves them), and pairs whose responses spread several
times in length, as real preference sets do. Each contender runs in its own subprocess (`run_child`): separate
peak-RSS figures, and TRL's Accelerate state (a process-wide singleton) stays out of the parent.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

_ONSETS = "b c d f g h j k l m n p r s t v w z br ch cl dr fl gr pl pr sh st th tr".split()
_VOWELS = "a e i o u ai ea ee oo ou".split()
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "ng", "ck"]


@dataclass(frozen=True)
class Setup:
    """Paths and sizes of one built benchmark world (JSON-able, handed to each child process)."""

    work: str
    data: str
    ref: str
    run: str
    params: int
    vocab: int
    n_pairs: int
    checkpoints: int


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 1, 2, 2, 3)))) + \
        rng.choice(_CODAS)


class Language:
    """Pseudo-words drawn with Zipf(1.1) frequencies: a few frequent short words, a long tail of rare ones."""

    def __init__(self, n_words: int = 6000, seed: int = 0):
        rng = random.Random(seed)
        self.words = sorted({_word(rng) for _ in range(n_words * 2)}, key=lambda w: (len(w), w))[:n_words]
        rng.shuffle(self.words)
        self.weights = [1.0 / (r + 1) ** 1.1 for r in range(len(self.words))]
        self.rng = rng

    def sentence(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(self.words, self.weights, k=self.rng.randint(lo, hi)))


def pair_rows(lang: Language, n: int, prompt_words: tuple[int, int] = (8, 24),
              response_words: tuple[int, int] = (16, 140)) -> list[dict[str, str]]:
    """Standard explicit-prompt rows; chosen and rejected lengths drawn independently (spread ~8x)."""
    return [{"prompt": lang.sentence(*prompt_words) + "?", "chosen": " " + lang.sentence(*response_words) + ".",
             "rejected": " " + lang.sentence(*response_words) + "."} for _ in range(n)]


def build(work: Path, n_pairs: int, k: int, hidden: int = 320, layers: int = 6, vocab: int = 3072,
          prompt_words: tuple[int, int] = (8, 24), response_words: tuple[int, int] = (16, 140)) -> Setup:
    """Write pairs.jsonl, ref/ and run/checkpoint-{10..10k}/ under `work`; deterministic for given arguments."""
    from transformers.utils import logging as hf_logging

    from dpo_doctor.zoo import tiny

    hf_logging.disable_progress_bar()
    lang = Language()
    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in pair_rows(lang, n_pairs, prompt_words, response_words)))
    tok = tiny.build_tokenizer([lang.sentence(20, 60) for _ in range(6000)], vocab_size=vocab)
    ref = tiny.build_model(tok, hidden=hidden, layers=layers, heads=4, max_positions=1024)
    tiny.save(ref, tok, work / "ref")
    write_checkpoints(ref, tok, work / "run", range(1, k + 1))
    return Setup(work=str(work), data=str(data), ref=str(work / "ref"), run=str(work / "run"),
                 params=sum(p.numel() for p in ref.parameters()), vocab=len(tok), n_pairs=n_pairs, checkpoints=k)


def write_checkpoints(ref, tok, run: Path, indices) -> list[Path]:
    """checkpoint-{10 i}: the reference plus N(0, 1e-3 * i) noise on every weight (distinct weights per step)."""
    import copy

    import torch

    from dpo_doctor.zoo import tiny

    out = []
    for i in indices:
        model = copy.deepcopy(ref)
        g = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 1e-3 * i)
        out.append(tiny.save(model, tok, run / f"checkpoint-{i * 10}"))
    return out


def checkpoint_dirs(run: str | Path) -> list[Path]:
    return sorted(Path(run).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))


def length_stats(setup: Setup) -> dict:
    """Token lengths as the engine sees them (TRL tokenization: EOS appended), for the JSON line."""
    from transformers import PreTrainedTokenizerFast

    from dpo_doctor.data.pairs import load_pairs

    tok = PreTrainedTokenizerFast.from_pretrained(setup.ref)
    pairs = load_pairs(Path(setup.data), tok, max_length=1024)
    seq = [len(p.prompt_ids) + len(r) for p in pairs.tokens for r in (p.chosen_ids, p.rejected_ids)]
    resp = sorted(len(r) for p in pairs.tokens for r in (p.chosen_ids, p.rejected_ids))
    return {"sequences": len(seq), "tokens": sum(seq), "mean_seq_tokens": round(sum(seq) / len(seq), 1),
            "response_tokens_min_p50_max": [resp[0], resp[len(resp) // 2], resp[-1]],
            "response_spread_p95_over_p5": round(resp[int(0.95 * len(resp))] / resp[int(0.05 * len(resp))], 2)}


def child_main(roles: dict) -> None:
    """Entry point of a child process: `script --child ROLE SETUP_JSON [ARGS_JSON]`; prints `RESULT {...}`."""
    import torch

    torch.set_num_threads(1)
    role, setup = sys.argv[2], Setup(**json.loads(sys.argv[3]))
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    out = roles[role](setup, **extra)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print("RESULT " + json.dumps(out), flush=True)


def run_child(script: str, role: str, setup: Setup, **extra) -> dict:
    """Run one role in a fresh interpreter (own peak RSS, own Accelerate state); its RESULT line as a dict."""
    cmd = [sys.executable, script, "--child", role, json.dumps(asdict(setup)), json.dumps(extra)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{role} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
