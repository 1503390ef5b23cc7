"""Distillation (htr.training.distillation, htr.train --teacher): the loss, the teacher's checks, and a student run."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from htr.alphabet import Alphabet
from htr.checkpoint import CheckpointError, atomic_save, load_model, model_checkpoint
from htr.data import LineDataset, collate_lines, load_splits
from htr.model import CRNN, ModelConfig
from htr.train import BEST_NAME, TrainConfig, train
from htr.training.distillation import Teacher, Teachers, distillation_loss
from tests.conftest import write_parquet_dataset

TEACHER = {"stem_channels": 8, "cnn": ["M", [1, 16], "Mh", [1, 24], "Mh", [1, 32]], "rnn_hidden": 32, "rnn_layers": 1}
STUDENT = {"stem_channels": 4, "cnn": ["M", [1, 8], "Mh", [1, 12], "Mh", [1, 16]], "rnn_hidden": 16, "rnn_layers": 1}


def test_the_loss_is_zero_only_when_the_student_matches_and_ignores_padding():
    torch.manual_seed(0)
    teacher = torch.randn(20, 3, 7).log_softmax(-1)
    student = torch.randn(20, 3, 7).log_softmax(-1)
    lengths = torch.tensor([20, 12, 5])
    assert distillation_loss(teacher, teacher, lengths).item() == pytest.approx(0.0, abs=1e-6)
    loss = distillation_loss(student, teacher, lengths, temperature=2.0)
    assert loss.item() > 0.01
    padded = student.clone()
    padded[12:, 1] = torch.randn(8, 7).log_softmax(-1)  # frames past a line's end do not count
    padded[5:, 2] = 0.0
    assert distillation_loss(padded, teacher, lengths, temperature=2.0).item() == pytest.approx(loss.item())


def random_teacher(dataset: Path, folder: Path, seed: int) -> str:
    """A teacher with sharp posteriors that depend on the image: random weights, the head scaled up (a model
    that learns to read takes longer than a test should)."""
    splits = load_splits(str(dataset))
    alphabet = Alphabet.from_texts(list(splits["train"]["text"]) + list(splits["validation"]["text"]))
    torch.manual_seed(seed)
    model = CRNN(ModelConfig(num_classes=alphabet.num_classes, **TEACHER))
    with torch.no_grad():
        model.head.weight.mul_(30)
    path = folder / BEST_NAME
    atomic_save(model_checkpoint(model.eval(), alphabet, {}), path)
    return str(path)


@pytest.fixture(scope="module")
def teacher_path(parquet_dataset, tmp_path_factory):
    return random_teacher(parquet_dataset, tmp_path_factory.mktemp("teacher"), seed=1)


@pytest.fixture(scope="module")
def other_teacher_path(parquet_dataset, tmp_path_factory):
    """Another expert on the same alphabet (other random weights)."""
    return random_teacher(parquet_dataset, tmp_path_factory.mktemp("other-teacher"), seed=2)


def test_a_teacher_must_see_the_students_frames_and_alphabet(teacher_path):
    _, alphabet = load_model(teacher_path)
    other_frames = ModelConfig(num_classes=alphabet.num_classes, cnn=["M", [1, 8], "M", [1, 8]])
    with pytest.raises(ValueError, match="px a frame"):
        Teacher(teacher_path, other_frames, alphabet, torch.device("cpu"))
    with pytest.raises(ValueError, match="alphabet"):
        Teacher(teacher_path, ModelConfig(num_classes=4, **STUDENT), Alphabet("xyz"), torch.device("cpu"))
    wider = Alphabet(alphabet.chars + "§")  # a character the teacher never saw: probability 0 from it
    teacher = Teacher(teacher_path, ModelConfig(num_classes=wider.num_classes, **STUDENT), wider, torch.device("cpu"))
    log_probs = teacher(torch.zeros(2, 1, 64, 128))
    assert log_probs.shape[-1] == wider.num_classes
    assert log_probs[..., -1].exp().max().item() == 0.0
    assert torch.allclose(log_probs[..., :-1].exp().sum(-1), torch.ones(log_probs.shape[:2]), atol=1e-4)


def test_a_mistyped_teacher_or_start_fails_before_the_data_loads(tmp_path, teacher_path):
    missing_data = str(tmp_path / "no-such-dataset")  # would fail too, but only once loading starts
    for field in ("teacher", "init_from"):
        cfg = TrainConfig(dataset=[missing_data], output_dir=str(tmp_path / field), device="cpu",
                          **{field: str(tmp_path / "tacher.pth")})  # fmt: skip
        with pytest.raises(CheckpointError, match="checkpoint not found: .*tacher.pth"):
            train(cfg, progress=False)


def mean_kl_to_teacher(run: Path, teacher_path: str, dataset) -> float:
    """Over the validation lines, for the run's final weights (its best checkpoint may be an early one: a
    student this small reads nothing yet, at 100% CER throughout)."""
    state = torch.load(run / "last_state.pt", weights_only=True)
    student, alphabet = CRNN(ModelConfig(**state["model_config"])).eval(), Alphabet(state["alphabet"])
    student.load_state_dict(state["model"])
    teacher = Teacher(teacher_path, student.config, alphabet, torch.device("cpu"))
    split = load_splits(str(dataset))["validation"]
    lines = LineDataset(split, alphabet, 64, student.output_length, "validation", None, for_training=False)
    batch = collate_lines([lines[i] for i in range(len(lines))])
    with torch.no_grad():
        log_probs, _ = student(batch["images"])
        return distillation_loss(
            log_probs, teacher(batch["images"]), student.output_lengths(batch["widths"]), 4.0
        ).item()


def test_a_distilled_student_comes_closer_to_its_teacher(parquet_dataset, teacher_path, tmp_path):
    def student(folder: str, teacher: str) -> Path:
        config = TrainConfig(dataset=str(parquet_dataset), output_dir=str(tmp_path / folder), epochs=6, batch_size=8,
                             warmup_steps=2, lr=3e-3, model=ModelConfig(num_classes=0, **STUDENT), lm_order=0,
                             teacher=teacher, distill_weight=3.0, patience=0)  # fmt: skip
        return Path(train(config, progress=False)["state_path"]).parent

    distilled, alone = student("distilled", teacher_path), student("alone", "")
    assert torch.load(distilled / BEST_NAME, weights_only=True)["training"]["recipe"]["distilled from"].startswith(
        BEST_NAME
    )
    kl_distilled = mean_kl_to_teacher(distilled, teacher_path, parquet_dataset)
    kl_alone = mean_kl_to_teacher(alone, teacher_path, parquet_dataset)
    assert kl_distilled < 0.8 * kl_alone, (kl_distilled, kl_alone)


def test_each_line_learns_from_its_datasets_teacher(teacher_path, other_teacher_path):
    _, alphabet = load_model(teacher_path)
    student = ModelConfig(num_classes=alphabet.num_classes, **STUDENT)
    cpu = torch.device("cpu")
    default, expert = (Teacher(path, student, alphabet, cpu) for path in (teacher_path, other_teacher_path))
    teachers = Teachers(default, [None, expert])  # dataset 0: the default teacher; dataset 1: its expert
    images = torch.rand(3, 1, 64, 96)
    log_probs = teachers(images, [0, 1, -1])  # -1: a synthetic line
    assert torch.allclose(log_probs[:, [0, 2]], default(images[[0, 2]]), atol=1e-5)
    assert torch.allclose(log_probs[:, [1]], expert(images[[1]]), atol=1e-5)
    assert not torch.allclose(log_probs[:, [1]], default(images[[1]]), atol=1e-2)  # the two teachers differ
    assert torch.equal(teachers(images), default(images))  # without sources: the default reads every line


def test_a_teacher_per_dataset_is_checked_against_the_datasets(tmp_path):
    with pytest.raises(ValueError, match="1 dataset teachers for 2 datasets"):
        TrainConfig(dataset=["a", "b"], dataset_teachers=["x.pth"], teacher="t.pth")
    with pytest.raises(ValueError, match="needs --teacher"):
        TrainConfig(dataset=["a", "b"], dataset_teachers=["", "x.pth"])


def test_training_sends_each_datasets_lines_to_its_teacher(parquet_dataset, teacher_path, other_teacher_path, tmp_path,
                                                           monkeypatch):  # fmt: skip
    other_dataset = write_parquet_dataset(tmp_path / "other", n_train=16, n_val=4, n_test=2)
    seen: list[int] = []
    routed = Teachers.__call__

    def spy(self, images, sources=None):
        seen.extend(sources)
        return routed(self, images, sources)

    monkeypatch.setattr(Teachers, "__call__", spy)
    config = TrainConfig(dataset=[str(parquet_dataset), str(other_dataset)], output_dir=str(tmp_path / "run"),
                         epochs=1, batch_size=8, model=ModelConfig(num_classes=0, **STUDENT), lm_order=0,
                         teacher=teacher_path, dataset_teachers=["", other_teacher_path], patience=0)  # fmt: skip
    best = Path(train(config, progress=False)["best_path"])
    assert Counter(seen) == {0: 48, 1: 16}  # every line of the epoch once, with the dataset it came from
    recipe = torch.load(best, weights_only=True)["training"]["recipe"]
    assert recipe["teachers by dataset"] == {"parquet0": BEST_NAME, "other": BEST_NAME}
