"""The shipped corpus, a byte-level tokenizer, the train/validation split and batch sampling.

The corpus has two domains, English prose (``docs``: Python's reference documentation) and Python
source (``code``: standard-library modules), both under the PSF license (``data/LICENSE-PSF.txt``).
``scripts/build_corpus.py`` rebuilds it; every load checks the files against ``data/SHA256SUMS``
(standard ``sha256sum`` format), and every file the loader reads must be listed there.

Tokenizer policy: bytes, not characters. Every string is encoded as its UTF-8 bytes, so there are no
unseen characters: any text round-trips, and a character outside ASCII simply costs 2-4 tokens.
``bytes`` (or ``bytearray``) are already tokens and are encoded as they are. Decoding a byte sequence
that is not valid UTF-8 (a model can sample one) replaces the broken bytes with U+FFFD instead of
raising.
"""

from __future__ import annotations

import hashlib
import numbers
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from .validate import InputTypeError, check_int

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DOMAINS = ("docs", "code")
# Every file the loader reads, plus the license that must travel with them: each needs a checksum.
CORPUS_FILES = tuple(f"{name}.txt" for name in DOMAINS) + ("LICENSE-PSF.txt",)
REBUILD_HINT = ("first restore the shipped files with `git checkout -- data/` (from the repository "
                "root); only if you mean to change the corpus, rebuild it with "
                "`python scripts/build_corpus.py` run by the same Python version as the \"python\" "
                "recorded in data/MANIFEST.json")
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # `sha256sum` output: text or binary (*) mode


class ByteTokenizer:
    """UTF-8 bytes as tokens: ``V = 256``; ``decode(encode(s)) == s`` for every string."""

    vocab_size = 256

    def encode(self, text: str | bytes) -> list[int]:
        """A string's UTF-8 bytes; ``bytes``/``bytearray`` are taken as they are (already bytes)."""
        if isinstance(text, str):
            return list(text.encode("utf-8"))
        if isinstance(text, (bytes, bytearray)):
            return list(text)
        raise InputTypeError(f"encode takes a str (or bytes), not {type(text).__name__}")

    def decode(self, tokens) -> str:
        """Token ids (a list of ints or an integer tensor) back to text."""
        if torch.is_tensor(tokens):
            if tokens.dim() > 1:
                raise ValueError(f"decode takes one sequence of token ids; got a tensor of shape "
                                 f"{tuple(tokens.shape)}")
            tokens = tokens.tolist() if tokens.dim() == 1 else [tokens.item()]
        if isinstance(tokens, str) or not hasattr(tokens, "__iter__"):
            raise InputTypeError(f"decode takes a sequence of integer token ids, not {type(tokens).__name__}")
        ids = []
        for i, t in enumerate(tokens):
            try:
                if isinstance(t, bool):
                    raise InputTypeError
                ids.append(operator.index(t))
            except TypeError:
                raise InputTypeError(f"token ids must be integers; token {i} is {t!r} "
                                f"({type(t).__name__})") from None
        bad = [t for t in ids if not 0 <= t < 256]
        if bad:
            raise ValueError(f"token ids must be in [0, 256); got {bad[:5]}")
        return bytes(ids).decode("utf-8", errors="replace")


def _check_found(data_dir: Path) -> None:
    """Raise a clear error when ``data_dir`` holds no corpus at all (e.g. a non-editable install)."""
    if data_dir.is_dir() and any((data_dir / name).exists() for name in ("SHA256SUMS", *CORPUS_FILES)):
        return
    raise FileNotFoundError(
        f"the course corpus was not found: looked in {data_dir}, which "
        f"{'has no corpus files' if data_dir.is_dir() else 'does not exist'}. If `helpers` was "
        "installed without its checkout (`pip install .` rather than `pip install -e .`), point at "
        "the checkout's data folder with `load_corpus('/path/to/the/course/data')`, or install the "
        "checkout with `pip install -e .`")


def read_checksums(sums: Path) -> dict[str, str]:
    """``{file name: sha256 hex digest}`` from a ``sha256sum``-style file (blank lines allowed)."""
    try:
        text = sums.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{sums} is not a text file of checksums; {REBUILD_HINT}") from None
    digests: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip()
        if not line:
            continue
        match = _SUM_LINE.fullmatch(line)
        if not match:
            raise ValueError(f"{sums}, line {number}: {line[:80]!r} is not a checksum line (expected "
                             f"'<64 hex digits>  <file name>' or '<64 hex digits> *<file name>'); "
                             f"{REBUILD_HINT}")
        digest, name = match.group(1).lower(), match.group(2)
        if name in (".", "..") or "/" in name or "\\" in name:
            raise ValueError(f"{sums}, line {number}: {name!r} is not a file name inside "
                             f"{sums.parent}; {REBUILD_HINT}")
        if name in digests:
            raise ValueError(f"{sums}, line {number}: {name} is listed again (first on line "
                             f"{first_line[name]}); {REBUILD_HINT}")
        digests[name], first_line[name] = digest, number
    return digests


def _verified_bytes(data_dir: Path) -> dict[str, bytes]:
    """Every file listed in SHA256SUMS, checked; raises if one the loader reads is unlisted."""
    _check_found(data_dir)
    sums = data_dir / "SHA256SUMS"
    if not sums.is_file():
        raise FileNotFoundError(f"{sums} is missing; {REBUILD_HINT}")
    digests = read_checksums(sums)
    unlisted = [name for name in CORPUS_FILES if name not in digests]
    if unlisted:
        raise ValueError(f"corpus file {data_dir / unlisted[0]} is not listed in {sums} (every file "
                         f"the loader reads must have a checksum; unlisted: {', '.join(unlisted)}); "
                         f"{REBUILD_HINT}")
    contents = {}
    for name, digest in digests.items():
        path = data_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {path} is missing; {REBUILD_HINT}")
        contents[name] = path.read_bytes()
        actual = hashlib.sha256(contents[name]).hexdigest()
        if actual != digest:
            raise ValueError(f"corpus file {path} does not match its checksum in {sums} "
                             f"(expected {digest[:12]}…, found {actual[:12]}…); {REBUILD_HINT}")
    return contents


def verify_data(data_dir: Path | str = DATA_DIR) -> None:
    """Check every file listed in SHA256SUMS, and that every file the loader reads is listed.

    Raises ``FileNotFoundError`` (no corpus there, or a listed file missing) or ``ValueError``
    (a file unlisted or changed, or a malformed checksum line), naming the file or line.
    """
    _verified_bytes(Path(data_dir))


@dataclass
class Batch:
    x: torch.Tensor  # (B, T) input tokens
    y: torch.Tensor  # (B, T) targets: x shifted left by one
    domain: torch.Tensor  # (B,) 0 = docs, 1 = code


class Corpus:
    """Both domains, tokenised and split 90/10 into train and validation per domain."""

    def __init__(self, texts: dict[str, str], val_fraction: float = 0.1):
        if not isinstance(texts, Mapping):
            raise InputTypeError(f"texts must be a dict of domain name -> text, not {type(texts).__name__}")
        missing = [name for name in DOMAINS if name not in texts]
        unknown = [name for name in texts if name not in DOMAINS]
        if missing or unknown:
            raise ValueError(f"texts must have exactly the domains {list(DOMAINS)}; "
                             f"missing {missing}, unexpected {unknown}")
        for name in DOMAINS:
            if not isinstance(texts[name], str):
                raise InputTypeError(f"texts[{name!r}] must be a str, not {type(texts[name]).__name__}")
        if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
            raise InputTypeError(f"val_fraction must be a number, not {type(val_fraction).__name__}")
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
        if not isinstance(split, str) or split not in self.splits:
            raise ValueError(f"split={split!r} must be 'train' or 'val'")
        return self.splits[split]

    def get_batch(self, split: str, batch_size: int, seq_len: int, *,
                  generator: torch.Generator | None = None, device=None,
                  domain: str | None = None) -> Batch:
        """Random windows of ``seq_len + 1`` tokens, each inside one domain (never straddling two).

        Each domain is drawn with equal probability unless ``domain`` fixes it.
        """
        batch_size = check_int("batch_size", batch_size, min_value=1)
        seq_len = check_int("seq_len", seq_len, min_value=1)
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


def _stamp(data_dir: Path) -> tuple:
    """Size and modification time of the checksums and every corpus file: changes when they do."""
    stamp = []
    for name in ("SHA256SUMS", *CORPUS_FILES):
        try:
            st = (data_dir / name).stat()
            stamp.append((name, st.st_size, st.st_mtime_ns))
        except OSError:
            stamp.append((name, None, None))
    return tuple(stamp)


# resolved directory -> (stamp of its files when loaded, whether that load was verified, corpus)
_CACHE: dict[Path, tuple[tuple, bool, Corpus]] = {}


def load_corpus(data_dir: Path | str = DATA_DIR, verify: bool = True) -> Corpus:
    """The shipped corpus, checked against its checksums (cached per directory).

    A verified call always returns a corpus that was verified against the directory's current files:
    a copy cached by an earlier ``verify=False`` call, or one loaded before the files changed, is
    loaded and checked again.
    """
    data_dir = Path(data_dir)
    _check_found(data_dir)
    key, stamp = data_dir.resolve(), _stamp(data_dir)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] == stamp and (cached[1] or not verify):
        return cached[2]
    if verify:
        contents = _verified_bytes(data_dir)  # the very bytes that were checked are the ones loaded
    else:
        contents = {}
        for name in DOMAINS:
            path = data_dir / f"{name}.txt"
            if not path.is_file():
                raise FileNotFoundError(f"corpus file {path} is missing; {REBUILD_HINT}")
            contents[path.name] = path.read_bytes()
    texts = {}
    for name in DOMAINS:
        try:
            texts[name] = contents[f"{name}.txt"].decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"corpus file {data_dir / f'{name}.txt'} is not UTF-8 text ({err}); "
                             f"{REBUILD_HINT}") from None
    corpus = Corpus(texts)
    _CACHE[key] = (stamp, verify, corpus)
    return corpus
