import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers.data import DATA_DIR, REBUILD_HINT, ByteTokenizer, Corpus, load_corpus, verify_data

ROOT = Path(__file__).resolve().parent.parent


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
        if f.is_file():  # the corpus files (data/teacher/ holds lesson 08's weights, checked on their own)
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "docs.txt").write_text("tampered")
    with pytest.raises(ValueError, match="build_corpus") as err:
        verify_data(tmp_path)
    assert "git checkout -- data/" in str(err.value)
    (tmp_path / "docs.txt").unlink()
    with pytest.raises(FileNotFoundError, match="build_corpus"):
        verify_data(tmp_path)


# ---- the corpus stays the corpus ----------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path) -> Path:
    """A copy of the shipped data/ folder to damage."""
    copy = tmp_path / "data"
    shutil.copytree(DATA_DIR, copy)
    return copy


def sums_lines(data: Path) -> list[str]:
    return (data / "SHA256SUMS").read_text().splitlines()


@pytest.mark.parametrize("name", ["code.txt", "docs.txt", "LICENSE-PSF.txt"])
def test_a_file_the_loader_reads_must_be_listed(data_copy, name):
    kept = [line for line in sums_lines(data_copy) if not line.endswith(name)]
    (data_copy / "SHA256SUMS").write_text("\n".join(kept) + "\n")
    with pytest.raises(ValueError, match="not listed") as err:
        verify_data(data_copy)
    assert str(data_copy / name) in str(err.value)
    with pytest.raises(ValueError, match=f"{name} is not listed"):
        load_corpus(data_copy)


def test_a_changed_file_is_refused_by_name(data_copy):
    with (data_copy / "code.txt").open("a", encoding="utf-8") as f:
        f.write("\n# one more line\n")
    with pytest.raises(ValueError, match="does not match its checksum") as err:
        load_corpus(data_copy)
    assert str(data_copy / "code.txt") in str(err.value) and "docs.txt" not in str(err.value)


def test_both_sha256sum_formats_and_blank_lines_are_accepted(data_copy):
    docs, code, license_line = sums_lines(data_copy)
    docs_digest, docs_name = docs.split("  ")
    code_digest, code_name = code.split("  ")
    # text mode (two spaces) with upper-case hex, binary mode (` *`), blank lines, Windows line ends
    lines = ["", f"{docs_digest.upper()}  {docs_name}", "", f"{code_digest} *{code_name}", "   ",
             license_line, "", ""]
    (data_copy / "SHA256SUMS").write_bytes("\r\n".join(lines).encode())
    verify_data(data_copy)
    assert load_corpus(data_copy).texts["code"].startswith("# ---- textwrap.py ----")


@pytest.mark.parametrize("bad, problem", [
    ("not a checksum at all", "not a checksum line"),
    ("abc123  docs.txt", "not a checksum line"),  # a digest too short
    ("{digest} docs.txt", "not a checksum line"),  # one space: neither text nor binary mode
    ("{digest}  data/docs.txt", "not a file name inside"),  # written from the wrong folder
    ("{digest}  code.txt", "listed again"),
])
def test_a_malformed_line_names_its_number(data_copy, bad, problem):
    lines = sums_lines(data_copy)
    digest = lines[1].split()[0]
    lines[2:2] = ["", bad.format(digest=digest)]  # the bad line is line 4 of the file
    (data_copy / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=f"line 4: .*{problem}") as err:
        verify_data(data_copy)
    assert str(data_copy / "SHA256SUMS") in str(err.value)


def test_an_unverified_load_does_not_satisfy_a_verified_one(data_copy):
    (data_copy / "docs.txt").write_text("tampered docs " * 100, encoding="utf-8")
    unchecked = load_corpus(data_copy, verify=False)  # asked for: no checking
    assert unchecked.texts["docs"].startswith("tampered")
    with pytest.raises(ValueError, match="docs.txt does not match its checksum"):
        load_corpus(data_copy)  # the cached unverified copy must not be handed out
    assert load_corpus(data_copy, verify=False) is unchecked


def test_a_verified_load_is_cached_until_the_files_change(data_copy):
    corpus = load_corpus(data_copy)
    assert load_corpus(data_copy) is corpus and load_corpus(data_copy, verify=False) is corpus
    assert load_corpus(str(data_copy / ".." / "data")) is corpus  # one entry per resolved folder
    (data_copy / "code.txt").write_text("changed after loading", encoding="utf-8")
    with pytest.raises(ValueError, match="code.txt does not match its checksum"):
        load_corpus(data_copy)


def test_the_hint_says_to_restore_before_rebuilding():
    assert REBUILD_HINT.index("git checkout -- data/") < REBUILD_HINT.index("build_corpus.py")
    assert "MANIFEST.json" in REBUILD_HINT and "same Python" in REBUILD_HINT


def test_a_missing_checksum_file_is_named(data_copy):
    (data_copy / "SHA256SUMS").unlink()
    with pytest.raises(FileNotFoundError, match="SHA256SUMS is missing.*git checkout -- data/"):
        load_corpus(data_copy)


def test_no_corpus_folder_says_not_found_and_where(tmp_path):
    missing = tmp_path / "nowhere"
    for call in (load_corpus, verify_data):
        with pytest.raises(FileNotFoundError, match="corpus was not found") as err:
            call(missing)
        assert str(missing) in str(err.value) and "load_corpus(" in str(err.value)
        assert "SHA256SUMS" not in str(err.value)


def test_a_non_editable_install_says_the_corpus_was_not_found(tmp_path):
    """The package copied out of the checkout (``pip install .``): data/ is not beside it."""
    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "helpers", site / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import helpers\n"
            "assert helpers.__file__.startswith(sys.argv[1]), helpers.__file__\n"
            "try:\n    helpers.load_corpus()\nexcept FileNotFoundError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    message = out.stdout
    assert "corpus was not found" in message
    assert str(site / "data") in message and "does not exist" in message
    assert "load_corpus('/path/to/the/course/data')" in message and "pip install -e ." in message


def test_gitattributes_keeps_the_corpus_byte_exact():
    lines = [line.split() for line in (ROOT / ".gitattributes").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert any(parts[0] == "data/*" and ("-text" in parts or "binary" in parts) for parts in lines), lines
    try:
        out = subprocess.run(["git", "check-attr", "text", "--", "data/docs.txt", "data/SHA256SUMS"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if out.returncode != 0:
        pytest.skip(f"not a git checkout: {out.stderr.strip()}")
    assert out.stdout.splitlines() == ["data/docs.txt: text: unset", "data/SHA256SUMS: text: unset"]


# ---- bad inputs to the tokenizer and the corpus ---------------------------------------------------


def test_encode_takes_bytes_as_they_are():
    tok = ByteTokenizer()
    assert tok.encode(b"A\xff") == [65, 255] and tok.encode(bytearray(b"hi")) == [104, 105]
    assert tok.encode("é") == tok.encode("é".encode())


@pytest.mark.parametrize("bad", [123, None, ["a"], torch.tensor([65])])
def test_encode_refuses_other_types_by_name(bad):
    with pytest.raises(TypeError, match=f"encode takes a str.*not {type(bad).__name__}"):
        ByteTokenizer().encode(bad)


@pytest.mark.parametrize("bad, kind, words", [
    ([65, 1.5], TypeError, r"token 1 is 1.5 \(float\)"),
    (["a"], TypeError, r"token 0 is 'a' \(str\)"),
    ([True], TypeError, r"token 0 is True \(bool\)"),
    (torch.tensor([65.0, 66.0]), TypeError, r"integers; token 0 is 65.0 \(float\)"),
    ("abc", TypeError, "sequence of integer token ids, not str"),
    (65, TypeError, "sequence of integer token ids, not int"),
    (torch.tensor([[65, 66]]), ValueError, r"shape \(1, 2\)"),
    ([65, -1], ValueError, r"\[0, 256\)"),
])
def test_decode_refuses_non_integer_tokens(bad, kind, words):
    with pytest.raises(kind, match=words):
        ByteTokenizer().decode(bad)


def test_decode_accepts_integer_tensors_and_scalars():
    tok = ByteTokenizer()
    assert tok.decode(torch.tensor([104, 105])) == "hi" and tok.decode(torch.tensor(65)) == "A"
    assert tok.decode([torch.tensor(104), 105]) == "hi" and tok.decode(b"hi") == "hi"


@pytest.mark.parametrize("texts, missing", [({"docs": "x" * 50}, r"\['code'\]"),
                                            ({}, r"\['docs', 'code'\]")])
def test_corpus_names_missing_domains(texts, missing):
    with pytest.raises(ValueError, match=rf"domains \['docs', 'code'\]; missing {missing}"):
        Corpus(texts)


def test_corpus_refuses_unknown_domains_and_non_text():
    with pytest.raises(ValueError, match=r"unexpected \['poetry'\]"):
        Corpus({"docs": "x" * 50, "code": "y" * 50, "poetry": "z"})
    with pytest.raises(TypeError, match=r"texts\['code'\] must be a str, not bytes"):
        Corpus({"docs": "x" * 50, "code": b"y" * 50})
    with pytest.raises(TypeError, match="dict of domain name -> text, not str"):
        Corpus("just one text")
    with pytest.raises(TypeError, match="val_fraction must be a number, not str"):
        Corpus({"docs": "x" * 50, "code": "y" * 50}, val_fraction="0.1")


@pytest.mark.parametrize("arg", ["batch_size", "seq_len"])
@pytest.mark.parametrize("bad", [2.5, True, "4", None])
def test_get_batch_needs_integer_sizes(arg, bad):
    corpus = Corpus({"docs": "x" * 500, "code": "y" * 500})
    sizes = {"batch_size": 2, "seq_len": 8, arg: bad}
    with pytest.raises(TypeError, match=f"{arg} must be an int, got {bad!r}"):
        corpus.get_batch("train", **sizes)
    with pytest.raises(ValueError, match=f"{arg}=-1 must be positive"):
        corpus.get_batch("train", **{**sizes, arg: -1})


def test_get_batch_names_a_non_string_split():
    with pytest.raises(ValueError, match=r"split=\['train'\]"):
        Corpus({"docs": "x" * 500, "code": "y" * 500}).get_batch(["train"], 2, 8)
