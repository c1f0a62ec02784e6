"""helpers: the shared package behind the DeepSeek-V3 course notebooks.

One module per mechanism; notebooks build each mechanism from scratch, then show it equals the
version here. Start with ``ModelConfig``/``preset``, ``Transformer``, ``load_corpus`` and ``train``.
"""

from . import _moved
from .checks import assert_close, check_shape
from .config import PRESETS, ModelConfig, preset
from .data import ByteTokenizer, Corpus, load_corpus
from .device import pick_device, seed_everything
from .generate import Generation, generate
from .kv_cache import KVCache, StaticKVCache
from .model import ModelOutput, Transformer
from .training import History, TrainConfig, evaluate, train

_moved.install()  # old module paths (helpers.moe_sweep, helpers.widgets, ...) for one term

COURSE = "deepseek-v3-course"  # marks this course's package; the notebooks' setup cell checks it
__all__ = [
    "assert_close", "check_shape", "PRESETS", "ModelConfig", "preset", "ByteTokenizer", "Corpus",
    "load_corpus", "pick_device", "seed_everything", "Generation", "generate", "KVCache",
    "StaticKVCache", "ModelOutput", "Transformer", "History", "TrainConfig", "evaluate", "train",
]
__version__ = "0.1.0"
