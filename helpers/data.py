"""The shipped corpus, a byte-level tokenizer, the train/validation split and batch sampling.

The corpus has two domains, English prose (``docs``: Python's reference documentation) and Python
source (``code``: standard-library modules), both under the PSF license (``data/LICENSE-PSF.txt``).
``scripts/build_corpus.py`` rebuilds it; every load checks the files against ``data/SHA256SUMS``.

Tokenizer policy: bytes, not characters. Every string is encoded as its UTF-8 bytes, so there are no
unseen characters: any text round-trips, and a character outside ASCII simply costs 2-4 tokens.
Decoding a byte sequence that is not valid UTF-8 (a model can sample one) replaces the broken
bytes with U+FFFD instead of raising.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DOMAINS = ("docs", "code")
REBUILD_HINT = "rebuild it with `python scripts/build_corpus.py` from the repository root"


class ByteTokenizer:
    """UTF-8 bytes as tokens: ``V = 256``; ``decode(encode(s)) == s`` for every string."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, tokens) -> str:
        if torch.is_tensor(tokens):
            tokens = tokens.tolist()
        bad = [t for t in tokens if not 0 <= int(t) < 256]
        if bad:
            raise ValueError(f"token ids must be in [0, 256); got {bad[:5]}")
        return bytes(int(t) for t in tokens).decode("utf-8", errors="replace")


def verify_data(data_dir: Path = DATA_DIR) -> None:
    """Check every file listed in SHA256SUMS; raise ``FileNotFoundError``/``ValueError`` if not."""
    sums = data_dir / "SHA256SUMS"
    if not sums.exists():
        raise FileNotFoundError(f"{sums} is missing; {REBUILD_HINT}")
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        path = data_dir / name
        if not path.exists():
            raise FileNotFoundError(f"corpus file {path} is missing; {REBUILD_HINT}")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            raise ValueError(f"corpus file {path} does not match its checksum "
                             f"(expected {digest[:12]}…, found {actual[:12]}…); {REBUILD_HINT}")


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) input tokens
    y: torch.Tensor  # (B, T) targets: x shifted left by one
    domain: torch.Tensor  # (B,) 0 = docs, 1 = code


class Corpus:
    """Both domains, tokenised and split 90/10 into train and validation per domain."""

    def __init__(self, texts: dict[str, str], val_fraction: float = 0.1):
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction={val_fraction} must be in (0, 1)")
        self.tokenizer = ByteTokenizer()
        self.texts = texts
        self.splits: dict[str, list[torch.Tensor]] = {"train": [], "val": []}
        for name in DOMAINS:
            ids = torch.tensor(self.tokenizer.encode(texts[name]), dtype=torch.uint8)
            cut = int(len(ids) * (1 - val_fraction))
            self.splits["train"].append(ids[:cut])
            self.splits["val"].append(ids[cut:])

    def n_tokens(self, split: str = "train") -> int:
        return sum(len(t) for t in self._split(split))

    def _split(self, split: str) -> list[torch.Tensor]:
        if split not in self.splits:
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        return self.splits[split]

    def get_batch(self, split: str, batch_size: int, seq_len: int, *,
                  generator: torch.Generator | None = None, device=None,
                  domain: str | None = None) -> Batch:
        """Random windows of ``seq_len + 1`` tokens, each inside one domain (never straddling two).

        Each domain is drawn with equal probability unless ``domain`` fixes it.
        """
        if batch_size <= 0 or seq_len <= 0:
            raise ValueError(f"batch_size={batch_size} and seq_len={seq_len} must be positive")
        parts = self._split(split)
        if domain is not None and domain not in DOMAINS:
            raise ValueError(f"domain={domain!r} must be one of {DOMAINS}")
        if any(len(p) <= seq_len + 1 for p in parts):
            raise ValueError(f"seq_len={seq_len} is longer than a {split} split")
        if domain is None:
            doms = torch.randint(len(DOMAINS), (batch_size,), generator=generator)
        else:
            doms = torch.full((batch_size,), DOMAINS.index(domain))
        rows = []
        for d in doms.tolist():
            start = torch.randint(len(parts[d]) - seq_len - 1, (1,), generator=generator).item()
            rows.append(parts[d][start:start + seq_len + 1])
        chunk = torch.stack(rows).long()  # (B, T+1)
        x, y = chunk[:, :-1], chunk[:, 1:]
        if device is not None:
            x, y, doms = x.to(device), y.to(device), doms.to(device)
        return Batch(x, y, doms)


_CACHE: dict[Path, Corpus] = {}


def load_corpus(data_dir: Path | str = DATA_DIR, verify: bool = True) -> Corpus:
    """The shipped corpus, checked against its checksums (cached per directory)."""
    data_dir = Path(data_dir)
    if data_dir not in _CACHE:
        if verify:
            verify_data(data_dir)
        texts = {name: (data_dir / f"{name}.txt").read_text(encoding="utf-8") for name in DOMAINS}
        _CACHE[data_dir] = Corpus(texts)
    return _CACHE[data_dir]
