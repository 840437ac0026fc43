"""What mmzoo guarantees (docs/guarantees.md), one test per defect of issue 11 that once broke it.

Nothing is executed from a model folder, nothing is downloaded for a local one, a plugin never breaks a built-in
(tests/test_plugins.py), collapse and non-finite numbers are caught, nothing is lost, nonsense is refused with
a named mmzoo error.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo._atomic import atomic_folder, read_folder
from mmzoo.cli import main
from mmzoo.data import make_shapes
from mmzoo.training import Trainer, prepare_run, read_metrics, train
from tests.conftest import CAPTIONS, tiny_model

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "embed_dim=16",
    "text.word_dim=8",
    "training.batch_size=8",
    "training.lr=1e-3",
    "training.epochs=1",
    "training.eval_batch_size=64",
]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    make_shapes(out, images=24, dev_images=10, test_images=10, regions=8, region_dim=16, seed=3)
    return out


def copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# -- 1. a model folder never runs code ---------------------------------------------------------------------
def test_a_model_folder_that_carries_code_is_refused(tmp_path):
    model = tiny_model("vsepp", text="bert-cnn")
    folder = model.save_pretrained(tmp_path / "m")
    marker = tmp_path / "ran"
    (folder / "text" / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    config = json.loads((folder / "text" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "text" / "config.json").write_text(json.dumps(config))
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"carries code .*modeling_evil\.py.*auto_map"):
        mmzoo.from_pretrained(f"local-dir:{folder}")
    (folder / "text" / "modeling_evil.py").unlink()  # an auto_map alone (pointing at the Hub) is refused too
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"auto_map"):
        mmzoo.from_pretrained(f"local-dir:{folder}")
    assert not marker.exists()


def test_transformers_is_always_told_not_to_trust_remote_code():
    sources = [p.read_text() for p in (ROOT / "plugins").rglob("*.py")]
    calls = [line for s in sources for line in s.splitlines() if ".from_pretrained(" in line and "Auto" in line]
    assert calls and all("trust_remote_code=False" in line for line in calls), calls


# -- 2. local-dir: never reaches the network ---------------------------------------------------------------
def timm_grid(backbone: str) -> mmzoo.MatchingModel:
    torch.manual_seed(0)
    settings = {
        "visual.backbone": backbone,
        "visual.weights": "none",
        "visual.heads": 4,
        "visual.ffn_dim": 32,
        "embed_dim": 32,
        "text.word_dim": 16,
    }
    model = mmzoo.create_model("pixels-lite0", **settings)
    model.text.fit(CAPTIONS)
    return model.eval()


@pytest.fixture
def no_network(monkeypatch):
    """Online mode, but every endpoint unreachable: a load that tried the network would fail or stall."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_a_saved_folder_naming_a_hub_backbone_never_contacts_the_hub(tmp_path, no_network):
    folder = timm_grid("tf_efficientnet_lite0").save_pretrained(tmp_path / "m")
    document = json.loads((folder / "config.json").read_text())
    document["model"]["visual"]["backbone"] = "hf-hub:timm/tf_efficientnet_lite0.in1k"
    (folder / "config.json").write_text(json.dumps(document))
    start = time.perf_counter()
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"holds no copy of its timm config"):
        mmzoo.from_pretrained(f"local-dir:{folder}")
    assert time.perf_counter() - start < 10


def test_a_local_backbone_travels_with_the_model(tmp_path, no_network):
    import timm
    from timm.models._hub import save_config_for_hf

    backbone = tmp_path / "backbone"
    backbone.mkdir()
    save_config_for_hf(timm.create_model("tf_efficientnet_lite0", pretrained=False), str(backbone / "config.json"))
    model = timm_grid(f"local-dir:{backbone}")
    folder = model.save_pretrained(tmp_path / "m")
    shutil.rmtree(backbone)  # the saved folder holds its own copy of the backbone's config
    loaded = mmzoo.from_pretrained(f"local-dir:{folder}")
    pixels = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_images(pixels).pooled, model.encode_images(pixels).pooled)


# -- 5. collapse is flagged --------------------------------------------------------------------------------
def test_constant_features_are_flagged_as_collapse(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "zero")
    for split in ("train", "dev"):
        path = data / f"{split}_ims.npy"
        np.save(path, np.zeros_like(np.load(path)))
    spec = prepare_run(data, "vsepp", sets=SMALL)
    with pytest.warns(mmzoo.errors.MMZooWarning) as caught:
        train(spec, tmp_path / "run", progress=False)
    messages = [str(w.message) for w in caught]
    assert any(re.search(r"collapsed.*spread.*features are constant", m) for m in messages), messages
    assert any("Every image gets the same score against each caption" in m for m in messages), messages  # dev eval
    record = read_metrics(tmp_path / "run")[0]
    assert record["collapse"], record
    with pytest.warns(mmzoo.errors.MMZooWarning, match=r"Every image gets the same score against each caption"):
        assert main(["eval", str(tmp_path / "run"), "--data", str(data), "--split", "dev", "--no-progress"]) == 0


def test_eval_warns_when_no_score_differs():
    from mmzoo.evaluation import warn_if_constant

    with pytest.warns(mmzoo.errors.MMZooWarning, match="Every entry of the score matrix is the same"):
        warn_if_constant(torch.full((3, 15), 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_if_constant(torch.randn(3, 15))


def test_a_healthy_run_raises_no_collapse_warning(shapes, tmp_path):
    spec = prepare_run(shapes, "vsepp", sets=[*SMALL, "training.epochs=2", "training.warmup_epochs=1"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", mmzoo.errors.MMZooWarning)
        train(spec, tmp_path / "run", progress=False)
    assert all(r["collapse"] == [] for r in read_metrics(tmp_path / "run"))


def test_the_collapse_diagnosis_names_cause_and_fix():
    from mmzoo.training import health
    from mmzoo.training.config import TrainConfig

    common = {"tied_loss": 12.8, "chance": 6.4, "feature_std": 1.0, "hardest_negative": True}
    vsepp = health.diagnose(  # the issue's vsepp run: loss at 2 x margin per sample, every embedding one point
        loss=12.81, dev_rsum=22.0, image_spread=0.01, text_spread=0.4, cfg=TrainConfig(warmup_epochs=0), **common
    )
    assert vsepp.collapsed and "warmup_epochs=1" in " ".join(vsepp.advice)
    high = health.diagnose(
        loss=12.8, dev_rsum=6.0, image_spread=0.5, text_spread=0.5, cfg=TrainConfig(lr=1e6), **common
    )
    assert high.collapsed and "very high" in " ".join(high.advice)
    fine = health.diagnose(loss=3.0, dev_rsum=300.0, image_spread=0.5, text_spread=0.5, cfg=TrainConfig(), **common)
    assert not fine.collapsed
    assert 6.3 < health.chance_rsum(500, 5) < 6.5 and health.chance_rsum(10, 5) > 100  # ~ 2 x 100 (1+5+10)/N


def test_the_collapse_signs_compare_with_what_this_run_measures(shapes, tmp_path, monkeypatch):
    """Chance rsum of the dev images actually scored (a subset), the tied loss of the loss as the run computes it."""
    from mmzoo.training import health
    from mmzoo.training.distributed import DistContext

    sets = [*SMALL, "training.dev_eval=subset", "training.dev_subset=6"]
    trainer = Trainer(prepare_run(shapes, "mmca", sets=[*sets, "text.name=gru"]), tmp_path / "run", progress=False)
    seen = {}
    monkeypatch.setattr(health, "diagnose", lambda **kw: seen.update(kw))
    trainer.check_health(10.0, {"rsum": 50.0})
    assert trainer.dev_subset.num_images == 6 and seen["chance"] == health.chance_rsum(6, 5)
    loss_fn, batch = trainer.model.loss_fn, trainer.cfg.batch_size
    assert seen["tied_loss"] == health.tied_loss(loss_fn, batch, trainer.device)
    trainer.ctx = DistContext(rank=0, world_size=2)  # as two processes see it
    assert trainer.tied_loss() == health.tied_loss(loss_fn, 2 * batch, trainer.device)  # global negatives
    trainer.cfg = trainer.cfg.model_copy(update={"global_negatives": False})
    assert trainer.tied_loss() == 2 * health.tied_loss(loss_fn, batch, trainer.device)  # per process, summed


# -- 6. NaN and infinity never pass ----------------------------------------------------------------------------
def test_non_finite_numbers_are_refused_everywhere(tmp_path):
    model = tiny_model("vsepp").eval()
    with pytest.raises(mmzoo.errors.InputError, match=r"NaN or infinite embeddings"):
        model.encode_images(torch.full((2, 4, 24), 1e38))
    for overrides in ({"alpha": float("inf")}, {"dual_weight": float("nan")}, {"embed_dim": True}):
        with pytest.raises(mmzoo.errors.ConfigError):
            mmzoo.create_model("mmca", **overrides)
    with pytest.raises(mmzoo.errors.ConfigError, match=r"training\.lr"):
        prepare_run("unused", "vsepp", sets=["training.lr=.inf"], region_dim=24, manifest={})
    folder = model.save_pretrained(tmp_path / "m")
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["visual.fc.weight"][0, 0] = float("nan")
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(mmzoo.errors.CheckpointError, match=r"NaN or infinite values in 1 tensor.*visual\.fc\.weight"):
        mmzoo.from_pretrained(f"local-dir:{folder}")


def test_training_stops_at_the_first_non_finite_loss(shapes, tmp_path, monkeypatch):
    trainer = Trainer(prepare_run(shapes, "vsepp", sets=SMALL), tmp_path / "run", progress=False)
    monkeypatch.setattr(type(trainer.model.loss_fn), "forward", lambda self, scores: scores.sum() * float("nan"))
    with pytest.raises(mmzoo.errors.TrainingError, match=r"became nan at epoch 1, step 1 \(captions .*Likely cause"):
        trainer.fit()
    assert read_metrics(tmp_path / "run") == [] and not (tmp_path / "run" / "last").exists()


# -- 7. captions in any script -------------------------------------------------------------------------------
def test_unicode_captions_keep_their_words_and_a_foreign_corpus_warns():
    from mmzoo_plugins.vsepp.text import words

    assert words("café crème naïve Straße") == ["café", "crème", "naïve", "strasse"]
    assert words("一只狗") == ["一", "只", "狗"] and words("Собака бежит") == ["собака", "бежит"]
    model = tiny_model("vsepp")
    model.text.fit(["собака бежит по траве", "кошка спит"])
    assert model.text.tokenize(["собака спит"]).ids.tolist()[0] != [1, 1]
    with pytest.warns(mmzoo.errors.MMZooWarning, match=r"not in the GRU's vocabulary"):
        model.encode_texts(["a dog runs across the green grass in the park today"] * 3)


# -- 8. data is never overwritten, and resuming on other data warns -----------------------------------------
def test_make_data_refuses_an_existing_dataset(tmp_path, capsys):
    out = str(tmp_path / "d")
    args = ["make-data", "shapes", "--out", out, "--images", "20", "--regions", "8", "--region-dim", "8"]
    assert main(args) == 0
    before = (tmp_path / "d" / "train_ims.npy").read_bytes()
    assert main([*args[:-1], "16"]) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert (tmp_path / "d" / "train_ims.npy").read_bytes() == before
    assert main([*args, "--overwrite", "--seed", "1"]) == 0


def test_resume_on_changed_data_warns(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "data")
    spec = prepare_run(data, "vsepp", sets=SMALL)
    train(spec, tmp_path / "run", progress=False)
    assert read_metrics(tmp_path / "run")[0]["epoch"] == 1
    features = np.load(data / "train_ims.npy")
    np.save(data / "train_ims.npy", features[::-1].copy())  # same shape, other content
    spec = mmzoo.training.read_run(tmp_path / "run")
    spec.training = spec.training.model_copy(update={"epochs": 2})
    with pytest.warns(mmzoo.errors.MMZooWarning, match=r"changed since this run started \(train_ims\.npy\)"):
        train(spec, tmp_path / "run", resume=True, progress=False)


# -- 9. a fresh start never appends to a stale log ---------------------------------------------------------
def test_a_new_run_after_a_kill_in_epoch_one_starts_clean_files(shapes, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "dev": {"rsum": 999.0}}\n')
    (run / "best").mkdir()
    (run / "best" / "config.json").write_text("{}")
    train(prepare_run(shapes, "vsepp", sets=[*SMALL, "training.epochs=2"]), run, progress=False)
    assert [m["epoch"] for m in read_metrics(run)] == [1, 2]
    assert all(m["dev"]["rsum"] != 999.0 for m in read_metrics(run))


def test_a_new_trainer_on_a_finished_run_is_refused_and_deletes_nothing(shapes, tmp_path):
    run = tmp_path / "run"
    spec = prepare_run(shapes, "vsepp", sets=SMALL)
    train(spec, run, progress=False)
    for state in ("last", ".last.old"):  # a finished run, and one whose last/ swap was cut
        before = sorted(p.name for p in run.iterdir())
        with pytest.raises(mmzoo.errors.ConfigError, match="already holds a run"):
            Trainer(spec, run)
        assert sorted(p.name for p in run.iterdir()) == sorted(before), "nothing removed"
        assert read_metrics(run) and (run / "best" / "model.safetensors").is_file()
        if state == "last":
            os.replace(run / "last", run / ".last.old")


def test_resuming_with_other_optimizer_groups_is_a_checkpoint_error(shapes, tmp_path):
    run = tmp_path / "run"
    train(prepare_run(shapes, "vsepp", sets=SMALL), run, progress=False)
    spec = mmzoo.training.read_run(run)
    spec.training = spec.training.model_copy(update={"epochs": 2, "lr_groups": {"text": 0.1}})
    with pytest.raises(mmzoo.errors.ConfigError, match=r"differs from the checkpoint .* training\.lr_groups\.text"):
        train(spec, run, resume=True, progress=False)
    assert [m["epoch"] for m in read_metrics(run)] == [1]


# -- 10. an interrupted swap of best/ loses nothing -----------------------------------------------------------
def test_a_crash_between_the_renames_of_best_is_recovered(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    train(prepare_run(shapes, "vsepp", sets=SMALL), run, progress=False)
    os.replace(run / "best", run / ".best.old")  # killed after the first rename of the swap
    args = ["eval", str(run), "--data", str(shapes), "--split", "dev", "--no-progress"]
    assert main(args) == 0 and "rsum" in capsys.readouterr().out
    assert not (run / "best").exists() and (run / ".best.old").is_dir(), (
        "a reader reads the old folder, changes nothing"
    )
    assert isinstance(mmzoo.from_pretrained(f"local-dir:{run / 'best'}"), mmzoo.MatchingModel)
    spec = mmzoo.training.read_run(run)
    spec.training = spec.training.model_copy(update={"epochs": 2})
    train(spec, run, resume=True, progress=False)  # the writer repairs
    assert (run / "best" / "model.safetensors").is_file() and not (run / ".best.old").exists()


def test_readers_never_see_half_a_swap(tmp_path):
    """A writer swapping a folder in over and over while readers read it (mmzoo eval during training): every
    read sees one complete version, and neither side fails."""
    target, errors, seen = tmp_path / "best", [], set()
    stop = threading.Event()

    def write() -> None:
        try:
            for version in range(30):
                with atomic_folder(target) as tmp:
                    for j in range(100):
                        (tmp / f"f{j}").write_text(str(version))
        except Exception as exc:  # reported below
            errors.append(f"writer: {exc!r}")
        finally:
            stop.set()

    def read() -> None:
        while not stop.is_set():
            try:
                with read_folder(target) as folder:
                    if folder.is_dir():
                        versions = {(folder / f"f{j}").read_text() for j in range(100)}
                        assert len(versions) == 1, versions
                        seen.update(versions)
            except Exception as exc:
                errors.append(f"reader: {exc!r}")
                return

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and len(seen) > 1, (errors, seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


# -- 11. nonsense is refused ----------------------------------------------------------------------------------
def test_nonsense_is_refused_with_named_errors(tmp_path):
    model = tiny_model("mmca").eval()
    with torch.no_grad():
        images, texts = model.encode_images(torch.randn(2, 5, 24)), model.encode_texts(CAPTIONS[:2])
        with pytest.raises(mmzoo.errors.InputError, match="swap the arguments"):
            model.similarity(texts, images)
        index = mmzoo.EmbeddingIndex.from_images(model, images)
        with pytest.raises(mmzoo.errors.InputError, match="queries must be texts"):
            model.search(images, index)
        with pytest.raises(mmzoo.errors.InputError, match="top_k must be an integer"):
            model.search(texts, index, top_k=2.5)
        other = tiny_model("mmca").eval()
        with pytest.raises(mmzoo.errors.InputError, match="encoded by another model"):
            model.similarity(other.encode_images(torch.randn(2, 5, 24)), texts)
        with pytest.raises(mmzoo.errors.InputError, match=r"different models|another model"):
            model.similarity(images, other.encode_texts(CAPTIONS[:2]))
        with pytest.raises(mmzoo.errors.InputError, match="on cpu and the captions on meta"):
            model.similarity(images, texts.to("meta"))
        with pytest.raises(mmzoo.errors.InputError, match="use list"):
            model.encode_texts(c for c in CAPTIONS)
        float64 = model.encode_images(torch.randn(2, 5, 24, dtype=torch.float64))
        assert float64.pooled.dtype == torch.float32
    with pytest.raises(mmzoo.errors.InputError, match=r"mask must be a bool tensor; got dtype torch\.float32"):
        mmzoo.plugin.Fragments(torch.zeros(2, 3, 4), torch.ones(2, 3), torch.zeros(2, 4))
    for overrides, where in (
        ({"fusion.windows": [0]}, "fusion.windows.0"),
        ({"embed_dim": 10**9}, "embed_dim"),
        ({"fusion.ffn_dim": 10**9}, "fusion.ffn_dim"),
    ):
        with pytest.raises(mmzoo.errors.ConfigError, match=where.replace(".", r"\.")):
            mmzoo.create_model("mmca", **overrides)
    folder = tiny_model("vsepp").save_pretrained(tmp_path / "m")
    document = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**document, "format_version": 999}))
    with pytest.raises(mmzoo.errors.CheckpointError, match="format_version 999, newer than this mmzoo"):
        mmzoo.from_pretrained(f"local-dir:{folder}")
    if not torch.cuda.is_available():
        (folder / "config.json").write_text(json.dumps(document))
        with pytest.raises(mmzoo.errors.InputError, match="no GPU"):
            mmzoo.from_pretrained(f"local-dir:{folder}", device="cuda")


def test_manifests_and_feature_files_with_nonsense_are_data_errors(shapes, tmp_path):
    data = copy_data(shapes, tmp_path / "d")
    manifest = json.loads((data / "mmzoo_data.json").read_text())
    for bad in ("five", 2.5, True):
        (data / "mmzoo_data.json").write_text(json.dumps({**manifest, "captions_per_image": bad}))
        with pytest.raises(mmzoo.errors.DataError, match="captions_per_image"):
            mmzoo.open_split(data, "train")
    (data / "mmzoo_data.json").write_text(json.dumps(manifest))
    (data / "dev_ims.npy").unlink()
    (data / "dev_ims.npy").mkdir()
    with pytest.raises(mmzoo.errors.DataError, match="is a folder"):
        mmzoo.open_split(data, "dev")


# -- the weak messages: one mmzoo error each ------------------------------------------------------------------
def test_unwritable_outputs_are_storage_errors(shapes, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    args = ["train", "--model", "vsepp", "--data", str(shapes), "--out", str(a_file), "--no-progress"]
    assert main(args + [f"--set={s}" for s in SMALL]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    model_dir = tiny_model("vsepp").save_pretrained(tmp_path / "m")
    for target, expected in ((tmp_path, "is a folder"), (Path("/sys/mmzoo-eval.json"), "permission is denied")):
        args = ["eval", str(model_dir), "--data", str(shapes), "--split", "dev", "--json", str(target)]
        assert main(args) == 2
        assert expected in capsys.readouterr().err


def test_a_file_size_limit_while_checkpointing_is_a_storage_error(shapes, tmp_path):
    code = f"""
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000))
from mmzoo.cli import main
sys.exit(main(["train", "--model", "vsepp", "--data", {str(shapes)!r}, "--out", {str(tmp_path / "run")!r},
               "--no-progress", *{[f"--set={s}" for s in SMALL]!r}]))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "file-size limit" in done.stderr and "Traceback" not in done.stderr


def test_garbage_run_files_are_named_errors(shapes, tmp_path, capsys):
    run = tmp_path / "run"
    train(prepare_run(shapes, "vsepp", sets=SMALL), run, progress=False)
    (run / "last" / "training_state.pt").write_bytes(b"garbage" * 10)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "not a readable training state" in capsys.readouterr().err
    (run / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(mmzoo.errors.DataError, match="line 1 is not JSON"):
        read_metrics(run)
    (run / "run.json").write_text("[]")
    assert main(["train", "--resume", str(run), "--no-progress"]) == 2
    assert "must hold a JSON object" in capsys.readouterr().err
