"""helpers.lessons.teacher: safetensors weights with a checked SHA-256, loaded without pickle."""

import hashlib
import json
import pickle
from dataclasses import asdict

import pytest
import safetensors.torch
import torch
from testkit import randomise

from helpers.config import preset
from helpers.lessons import teacher
from helpers.lessons.teacher import checksum_path, load_weights, save_weights, teacher_card
from helpers.model import Transformer

TOKENS = torch.arange(24).reshape(2, 12) % 256


def _model(**changes) -> Transformer:
    return randomise(Transformer(preset("test", **changes)))


@pytest.fixture
def saved(tmp_path):
    """A randomised model and the path it was saved to (float16)."""
    model = _model()
    path = tmp_path / "m.safetensors"
    save_weights(model, path)
    return model, path


def test_float32_round_trip_is_exact(tmp_path):
    model = _model(n_kv_heads=2)
    path = tmp_path / "m.safetensors"
    save_weights(model, path, dtype=torch.float32)
    loaded = load_weights(path, device="cpu")
    assert loaded.config == model.config and not loaded.training
    assert torch.equal(loaded(TOKENS), model(TOKENS))


def test_float16_round_trip_equals_the_original_through_float16(saved):
    model, path = saved
    loaded = load_weights(path, device="cpu")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    assert torch.equal(loaded(TOKENS), model(TOKENS))
    assert path.stat().st_size < 2 * 4 * model.num_params()  # two bytes a weight, plus a header


def test_moe_mla_with_mtp_round_trips(tmp_path):
    model = _model(attn_type="mla", n_routed_experts=4, balance="loss_free", mtp_depth=1)
    biases = [buf for name, buf in model.named_buffers() if name.endswith("bias")]
    assert biases  # the loss-free balancing bias is a persistent buffer: it must travel too
    for buf in biases:
        buf.normal_()
    path = tmp_path / "m.safetensors"
    save_weights(model, path, dtype=torch.float32)
    loaded = load_weights(path, device="cpu")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_tied_embeddings_round_trip_and_stay_tied(tmp_path):
    model = _model(tie_embeddings=True)
    path = tmp_path / "m.safetensors"
    save_weights(model, path, dtype=torch.float32)
    assert "head.weight" not in safetensors.torch.load(path.read_bytes())  # written once
    loaded = load_weights(path, device="cpu")
    assert loaded.head.weight is loaded.tok_emb.weight
    assert torch.equal(loaded(TOKENS), model(TOKENS))


def test_checksum_file_is_in_sha256sum_format(saved):
    _, path = saved
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checksum_path(path).read_text() == f"{digest}  {path.name}\n"
    assert save_weights(_model(), path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_config_and_extra_meta_in_the_metadata_and_the_card(tmp_path):
    model = _model()
    path = tmp_path / "m.safetensors"
    recipe = {"steps": 3, "lr": 1e-3, "preset": "test"}
    save_weights(model, path, extra_meta={"recipe": recipe})
    card = teacher_card(load_weights(path, device="cpu"))
    assert card["recipe"] == recipe and card["parameters"] == model.num_params()
    assert card["file"] == path.name and card["file_bytes"] == path.stat().st_size
    assert card["stored_dtype"] == "float16" and card["config"]["dim"] == model.config.dim
    assert teacher_card(model)["file"] is None  # not loaded from a file
    with pytest.raises(ValueError, match="reserved"):
        save_weights(model, path, extra_meta={"config": 1})


def test_one_flipped_byte_fails_the_checksum(saved):
    _, path = saved
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"checksum.*SHA-256 digest expected [0-9a-f]{64}.*found") as err:
        load_weights(path)
    assert str(path) in str(err.value) and "train_teacher.py" in str(err.value)


def test_a_wrong_expected_digest_fails(saved):
    _, path = saved
    with pytest.raises(ValueError, match="expected_sha256"):
        load_weights(path, expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="64 hex digits"):
        load_weights(path, expected_sha256="abc")
    right = hashlib.sha256(path.read_bytes()).hexdigest().upper()
    checksum_path(path).unlink()
    load_weights(path, expected_sha256=right, device="cpu")  # a pinned digest needs no .sha256 file


def test_missing_files_raise_file_not_found(saved):
    _, path = saved
    checksum_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"m\.safetensors\.sha256.*save_weights"):
        load_weights(path)
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        load_weights(path.with_name("nothing.safetensors"))


def test_loading_never_unpickles(saved, monkeypatch):
    model, path = saved

    def refuse(*args, **kwargs):
        raise AssertionError("the loader must not unpickle")

    for module, name in ((torch, "load"), (torch.serialization, "load"), (pickle, "load"),
                         (pickle, "loads")):
        monkeypatch.setattr(module, name, refuse)
    assert load_weights(path, device="cpu").config == model.config


def _rewrite_meta(path, **changes):
    """Re-save ``path`` with metadata changed, and a checksum that matches (so only the content is wrong)."""
    tensors = safetensors.torch.load(path.read_bytes())
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    raw = safetensors.torch.save(tensors, metadata={**header["__metadata__"], **changes})
    path.write_bytes(raw)
    checksum_path(path).write_text(f"{hashlib.sha256(raw).hexdigest()}  {path.name}\n")


def test_an_unknown_config_field_is_named(saved):
    model, path = saved
    _rewrite_meta(path, config=json.dumps({**asdict(model.config), "warp": 9}))
    with pytest.raises(ValueError, match="'warp'"):
        load_weights(path)
    _rewrite_meta(path, config=json.dumps({"dim": 33}))
    with pytest.raises(ValueError, match="dim"):  # ModelConfig's own validation, with the file named
        load_weights(path)


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "junk.safetensors"
    raw = torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes()
    path.write_bytes(raw)
    checksum_path(path).write_text(f"{hashlib.sha256(raw).hexdigest()}  {path.name}\n")
    with pytest.raises(ValueError, match="junk.safetensors is not a valid safetensors"):
        load_weights(path)
    raw = safetensors.torch.save({"x": torch.zeros(2)})  # valid safetensors, but no config
    path.write_bytes(raw)
    checksum_path(path).write_text(f"{hashlib.sha256(raw).hexdigest()}  {path.name}\n")
    with pytest.raises(ValueError, match="no model config"):
        load_weights(path)


def test_weights_that_do_not_fit_the_config_are_refused(saved):
    _, path = saved
    tensors = safetensors.torch.load(path.read_bytes())
    del tensors["norm.weight"]
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])
    raw = safetensors.torch.save(tensors, metadata=header["__metadata__"])
    path.write_bytes(raw)
    checksum_path(path).write_text(f"{hashlib.sha256(raw).hexdigest()}  {path.name}\n")
    with pytest.raises(ValueError, match="norm.weight"):
        load_weights(path)


def test_load_teacher_reads_the_module_path_and_digest(tmp_path, monkeypatch):
    model = _model()
    path = tmp_path / "teacher" / "teacher.safetensors"
    digest = save_weights(model, path)
    monkeypatch.setattr(teacher, "TEACHER_PATH", path)
    monkeypatch.setattr(teacher, "TEACHER_SHA256", None)
    assert teacher.load_teacher(device="cpu").config == model.config  # TEACHER_SHA256 None: the .sha256 file
    monkeypatch.setattr(teacher, "TEACHER_SHA256", digest)
    checksum_path(path).unlink()
    assert teacher.load_teacher(device="cpu").config == model.config
    monkeypatch.setattr(teacher, "TEACHER_SHA256", "f" * 64)
    with pytest.raises(ValueError, match="checksum"):
        teacher.load_teacher()


def test_the_shipped_teacher_matches_its_pinned_digest():
    """data/teacher/ as committed: the file, the .sha256 beside it and the pinned constant agree."""
    model = teacher.load_teacher(device="cpu")
    assert model.weights_source.sha256 == teacher.TEACHER_SHA256
    assert checksum_path(teacher.TEACHER_PATH).read_text().split()[0] == teacher.TEACHER_SHA256
    assert model.config.dim > 96  # larger than the tiny student it teaches
