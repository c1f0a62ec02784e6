import shutil

import pytest
import torch

from helpers.data import DATA_DIR, ByteTokenizer, load_corpus, verify_data


@pytest.mark.parametrize("text", ["hello", "def f(x):\n    return x", "naïve café — 日本語 🙂", ""])
def test_tokenizer_round_trip(text):
    tok = ByteTokenizer()
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


def test_tokenizer_round_trips_the_corpus():
    corpus = load_corpus()
    tok = corpus.tokenizer
    for text in corpus.texts.values():
        assert tok.decode(tok.encode(text)) == text


def test_decode_policy_for_bad_bytes():
    tok = ByteTokenizer()
    assert tok.decode([0xE6, 0x97]) == "\ufffd"  # a truncated character is replaced, not raised
    with pytest.raises(ValueError, match="256"):
        tok.decode([300])


def test_split_sizes_and_batches():
    corpus = load_corpus()
    n_train, n_val = corpus.n_tokens("train"), corpus.n_tokens("val")
    assert 0.08 < n_val / (n_train + n_val) < 0.12
    g = torch.Generator().manual_seed(0)
    b = corpus.get_batch("train", 4, 16, generator=g)
    assert b.x.shape == b.y.shape == (4, 16) and b.domain.shape == (4,)
    assert torch.equal(b.x[:, 1:], b.y[:, :-1])  # targets are inputs shifted by one
    code = corpus.get_batch("val", 8, 16, generator=g, domain="code")
    assert (code.domain == 1).all()
    again = corpus.get_batch("train", 4, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.x, b.x)


def test_bad_batch_requests():
    corpus = load_corpus()
    with pytest.raises(ValueError, match="split"):
        corpus.get_batch("test", 2, 8)
    with pytest.raises(ValueError, match="domain"):
        corpus.get_batch("train", 2, 8, domain="poetry")
    with pytest.raises(ValueError, match="batch_size=0"):
        corpus.get_batch("train", 0, 8)


def test_checksums_detect_missing_and_altered_files(tmp_path):
    verify_data()
    for f in DATA_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "docs.txt").write_text("tampered")
    with pytest.raises(ValueError, match="build_corpus"):
        verify_data(tmp_path)
    (tmp_path / "docs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="build_corpus"):
        verify_data(tmp_path)
