import pytest
import torch

from helpers.device import available_devices, pick_device


def test_env_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")


def test_unavailable_cuda_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(ValueError, match="CUDA"):
        pick_device()


def test_default_is_the_best_available_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    dev = pick_device()
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert dev.type == expected
    assert torch.zeros(1, device=dev).device.type == expected


def test_an_argument_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "not-a-device")
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")


def test_errors_say_where_the_choice_came_from(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"COURSE_DEVICE='gpu' is not a device name.*offers \['cpu'"):
        pick_device()
    with pytest.raises(ValueError, match=r"device='xpu'"):
        pick_device("xpu")
    assert "cpu" in available_devices()
