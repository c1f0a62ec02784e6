"""Saving and loading a course model's weights safely, and the shipped teacher of lesson 08.

Lesson 08 (distillation vs RL) needs a *teacher*: a larger model of the course's own architecture,
trained once by ``scripts/train_teacher.py`` and shipped in ``data/teacher/`` so the lesson never
retrains it. The weights travel as safetensors (a flat table of tensors plus a JSON header, no pickle,
so loading a file cannot run code), stored in float16 to keep the file small, with the model's
``ModelConfig`` as JSON in the header's metadata. Beside each file sits ``<file>.sha256`` in
``sha256sum`` format; the loader reads the bytes once, checks their SHA-256 against it (or against a
digest the caller pins), and only then parses them.

Tied embeddings (``tie_embeddings=True``): ``head.weight`` *is* ``tok_emb.weight``; it is written once
(as ``tok_emb.weight``) and the loader ties it again. Non-persistent buffers (the RoPE tables, the MoE
load counters) are not in the state dict; the constructor rebuilds them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import safetensors
import safetensors.torch
import torch

from ..config import ModelConfig
from ..data import DATA_DIR
from ..device import pick_device
from ..model import Transformer
from ..validate import InputTypeError

TEACHER_PATH = DATA_DIR / "teacher" / "teacher.safetensors"
# the digest `python scripts/train_teacher.py` printed for the shipped file (pinned here, so a tampered
# .sha256 file beside the weights cannot vouch for tampered weights)
TEACHER_SHA256: str | None = "b71bfe2aeabae0f7e2a523addfb7fe71594ac6c2955c676556c9aad65e3794b9"
RESERVED_KEYS = ("config", "format", "dtype")  # metadata keys save_weights writes itself
TEACHER_HINT = ("for the course's teacher, restore the shipped files with `git checkout -- data/teacher/` "
                "(from the repository root), or re-create them with `python scripts/train_teacher.py`")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64}) [ *](.+)")  # `sha256sum` output: text or binary (*) mode


@dataclass(frozen=True)
class WeightsSource:
    """Where a loaded model's weights came from (``model.weights_source``; read by ``teacher_card``)."""

    path: Path
    sha256: str  # hex digest of the file's bytes, checked before parsing
    n_bytes: int
    stored_dtype: str  # e.g. "float16"
    meta: dict = field(default_factory=dict)  # the caller's extra_meta, decoded from JSON


def checksum_path(path: Path | str) -> Path:
    """The ``sha256sum``-format file beside a weights file: ``teacher.safetensors.sha256``."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def save_weights(model: Transformer, path: Path | str, *, dtype: torch.dtype = torch.float16,
                 extra_meta: dict | None = None) -> str:
    """Write ``model``'s weights to ``path`` (a ``.safetensors`` file) and its checksum beside it.

    Floating-point tensors are cast to ``dtype`` (float16 halves the file); the config is stored as JSON
    in the metadata, with each ``extra_meta`` value as a JSON string (``teacher_card`` shows the one
    under ``"recipe"``: how the model was trained). Both
    files are replaced atomically. Returns the SHA-256 hex digest of the file's bytes, which is also
    written to ``path + ".sha256"`` as ``<digest>  <file name>``.
    """
    if not isinstance(model, Transformer):
        raise InputTypeError(f"model must be a helpers.model.Transformer, got {type(model).__name__}")
    _check_dtype(dtype, "torch.float16")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: a weights file must end in .safetensors")
    metadata = {"config": json.dumps(asdict(model.config)), "format": "pt", "dtype": str(dtype)[6:]}
    metadata.update(_encoded_meta(extra_meta))
    raw = safetensors.torch.save(_tensors_to_save(model, dtype), metadata=metadata)
    digest = hashlib.sha256(raw).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, raw)
    _atomic_write(checksum_path(path), f"{digest}  {path.name}\n".encode())
    return digest


def _check_dtype(dtype, example: str) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputTypeError(f"dtype must be a floating-point torch.dtype such as {example}, got {dtype!r}")


def _encoded_meta(extra_meta: dict | None) -> dict[str, str]:
    if extra_meta is None:
        return {}
    if not isinstance(extra_meta, dict):
        raise InputTypeError(f"extra_meta must be a dict (or None), got {type(extra_meta).__name__}")
    clash = [key for key in extra_meta if key in RESERVED_KEYS]
    if clash:
        raise ValueError(f"extra_meta keys {clash} are reserved: save_weights writes {list(RESERVED_KEYS)} "
                         "itself")
    bad = [key for key in extra_meta if not isinstance(key, str)]
    if bad:
        raise InputTypeError(f"extra_meta keys must be strings, got {bad}")
    encoded = {}
    for key, value in extra_meta.items():
        try:
            encoded[key] = json.dumps(value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"extra_meta[{key!r}] cannot be stored as JSON: {err}") from None
    return encoded


def _tensors_to_save(model: Transformer, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The state dict on the CPU, floats cast to ``dtype``, the tied head left out (written once)."""
    state = model.state_dict()
    if model.config.tie_embeddings:
        if state["head.weight"].data_ptr() != state["tok_emb.weight"].data_ptr():
            raise ValueError("config.tie_embeddings is True but model.head.weight is not "
                             "model.tok_emb.weight; re-tie them before saving")
        del state["head.weight"]
    seen: dict[int, str] = {}
    for name, tensor in state.items():  # any other sharing would be silently untied on load
        if tensor.data_ptr() in seen and tensor.numel():
            raise ValueError(f"{name} shares its storage with {seen[tensor.data_ptr()]}; only the tied "
                             "embedding (config.tie_embeddings) can be saved once and re-tied")
        seen[tensor.data_ptr()] = name
    return {name: (t.to(dtype) if t.is_floating_point() else t).detach().cpu().contiguous().clone()
            for name, t in state.items()}


def _atomic_write(path: Path, data: bytes) -> None:
    """A temporary file in the same folder, then ``os.replace``: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path | str, *, expected_sha256: str | None = None, device=None,
                 dtype: torch.dtype = torch.float32) -> Transformer:
    """A ``Transformer`` rebuilt from a file written by ``save_weights``, in eval mode.

    The file's SHA-256 is checked first, against ``expected_sha256`` or, if that is None, against the
    ``.sha256`` file beside it; only matching bytes are parsed, by ``safetensors`` (never ``torch.load``
    or pickle). The weights are cast to ``dtype`` and moved to ``pick_device(device)``; the model's
    ``weights_source`` records the file, its digest and its metadata. Raises ``FileNotFoundError`` (a
    file missing) or ``ValueError`` (a wrong checksum, a file that is not safetensors, a config or a
    state dict that does not fit the model), naming the file.
    """
    path = Path(path)
    _check_dtype(dtype, "torch.float32")
    if expected_sha256 is not None and (not isinstance(expected_sha256, str)
                                        or not _HEX64.fullmatch(expected_sha256)):
        raise ValueError(f"expected_sha256 must be 64 hex digits (a SHA-256 digest), got {expected_sha256!r}")
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} is missing; {TEACHER_HINT}")
    if expected_sha256 is not None:
        expected, source = expected_sha256.lower(), "expected_sha256"
    else:
        expected, source = _read_checksum_file(path), str(checksum_path(path))
    raw = path.read_bytes()  # read once: the bytes checked are the bytes parsed
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        raise ValueError(f"weights file {path} does not match its checksum (SHA-256 digest expected "
                         f"{expected} from {source}, found {actual}): the file was changed or damaged; "
                         f"{TEACHER_HINT}")
    tensors, meta = _parse(raw, path)
    cfg = _config_from_meta(meta, path)
    model = Transformer(cfg)
    if cfg.tie_embeddings and "tok_emb.weight" in tensors:
        tensors.setdefault("head.weight", tensors["tok_emb.weight"])  # written once; the model re-ties
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights file {path} does not fit the model its config describes: {err}") from None
    model.to(device=pick_device(device), dtype=dtype).eval()
    extra = {key: _decoded(meta[key], key, path) for key in meta if key not in RESERVED_KEYS}
    model.weights_source = WeightsSource(path=path, sha256=actual, n_bytes=len(raw),
                                         stored_dtype=meta.get("dtype", "unknown"), meta=extra)
    return model


def _read_checksum_file(path: Path) -> str:
    """The digest listed for ``path`` in the ``sha256sum``-format file beside it."""
    sums = checksum_path(path)
    if not sums.is_file():
        raise FileNotFoundError(f"checksum file {sums} is missing: it is written by save_weights beside "
                                f"the weights (or pass expected_sha256=); {TEACHER_HINT}")
    try:
        lines = [line.rstrip() for line in sums.read_bytes().decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{sums} is not a text file of checksums; {TEACHER_HINT}") from None
    matches = [_SUM_LINE.fullmatch(line) for line in lines]
    if len(lines) != 1 or matches[0] is None:
        raise ValueError(f"{sums} must hold one line '<64 hex digits>  {path.name}' (sha256sum format), "
                         f"found {lines[:2]!r}; {TEACHER_HINT}")
    digest, name = matches[0].group(1).lower(), matches[0].group(2)
    if name != path.name:
        raise ValueError(f"{sums} lists {name!r}, not {path.name!r}; {TEACHER_HINT}")
    return digest


def _parse(raw: bytes, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors by safetensors (which validates the whole file), then the header's metadata."""
    problem = f"weights file {path} is not a valid safetensors file"
    try:
        tensors = safetensors.torch.load(raw)
    except (safetensors.SafetensorError, ValueError, TypeError) as err:
        raise ValueError(f"{problem} ({err}); {TEACHER_HINT}") from None
    # The layout is <u64 little-endian header size><JSON header><tensor bytes>; safetensors checked it.
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    meta = header.get("__metadata__") or {}
    if "config" not in meta:
        raise ValueError(f"weights file {path} has no model config in its metadata: it was not written "
                         f"by helpers.lessons.teacher.save_weights; {TEACHER_HINT}")
    return tensors, meta


def _decoded(text: str, key: str, path: Path):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"weights file {path}: metadata {key!r} is not JSON ({text[:60]!r})") from None


def _config_from_meta(meta: dict[str, str], path: Path) -> ModelConfig:
    """``ModelConfig(**json)``; unknown fields raise (a missing field takes its default)."""
    values = _decoded(meta["config"], "config", path)
    if not isinstance(values, dict):
        raise ValueError(f"weights file {path}: metadata 'config' must be a JSON object, got "
                         f"{type(values).__name__}")
    unknown = sorted(set(values) - {f.name for f in fields(ModelConfig)})
    if unknown:
        raise ValueError(f"weights file {path}: its config has field(s) {unknown} that ModelConfig does not "
                         "know (written by a newer or changed version of helpers?); re-save it with this "
                         f"version; {TEACHER_HINT}")
    try:
        return ModelConfig(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"weights file {path}: {err}") from None


def load_teacher(device=None) -> Transformer:
    """The shipped lesson-08 teacher, checked against ``TEACHER_SHA256`` (or its ``.sha256`` file)."""
    return load_weights(TEACHER_PATH, expected_sha256=TEACHER_SHA256, device=device)


def teacher_card(model: Transformer) -> dict:
    """A small table for the lesson: size, shape, and (if loaded from a file) the file and recipe."""
    if not isinstance(model, Transformer):
        raise InputTypeError(f"model must be a helpers.model.Transformer, got {type(model).__name__}")
    cfg = model.config
    card = {
        "parameters": model.num_params(),
        "config": {"dim": cfg.dim, "n_layers": cfg.n_layers, "n_heads": cfg.n_heads,
                   "n_kv_heads": cfg.kv_heads, "attn_type": cfg.attn_type,
                   "n_routed_experts": cfg.n_routed_experts, "vocab_size": cfg.vocab_size,
                   "max_seq_len": cfg.max_seq_len, "tie_embeddings": cfg.tie_embeddings},
        "file": None, "file_bytes": None, "sha256": None, "stored_dtype": None, "recipe": None,
    }
    source = getattr(model, "weights_source", None)
    if isinstance(source, WeightsSource):
        card.update(file=source.path.name, file_bytes=source.n_bytes, sha256=source.sha256,
                    stored_dtype=source.stored_dtype, recipe=source.meta.get("recipe"))
    return card
