"""OFMClassifier: Neuralet's exact layer list, parameter counts, classes and embeddings."""
import pytest
import torch

from models.ofm import EMBEDDING_DIM, OFMClassifier, count_parameters


def test_parameter_counts_match_neuralet():
    m = OFMClassifier(["mask", "no_mask"])
    assert count_parameters(m) == 296_384  # PyTorch trainable
    assert count_parameters(m, keras_way=True) == 296_832  # + BatchNorm moving mean/variance


def test_layer_list_is_neuralets():
    m = OFMClassifier()
    convs = [x for x in m.modules() if isinstance(x, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    bns = [x for x in m.modules() if isinstance(x, torch.nn.BatchNorm2d)]
    assert [b.eps for b in bns] == [1e-3] * 3 and all(abs(b.momentum - 0.01) < 1e-9 for b in bns)
    assert sum(isinstance(x, torch.nn.MaxPool2d) for x in m.modules()) == 2
    assert sum(isinstance(x, torch.nn.AdaptiveAvgPool2d) for x in m.modules()) == 1
    drops = [x.p for x in m.modules() if isinstance(x, torch.nn.Dropout)]
    assert drops == [0.2, 0.2, 0.2]
    assert (m.fc.in_features, m.fc.out_features) == (128, 64)
    assert (m.fc_1.out_features, m.fc_out.out_features) == (10, 2)


def test_forward_shapes_and_embedding():
    m = OFMClassifier(["a", "b", "c"]).eval()
    x = torch.rand(5, 3, 45, 45)
    logits, emb = m(x, return_embedding=True)
    assert logits.shape == (5, 3) and emb.shape == (5, EMBEDDING_DIM)
    assert torch.allclose(m(x), logits)
    assert torch.allclose(m.fc_out(emb), logits)  # the embedding is the output layer's input
    assert (emb >= 0).all()  # after ReLU


def test_classes_validated():
    with pytest.raises(ValueError):
        OFMClassifier(["mask"])
    with pytest.raises(ValueError):
        OFMClassifier(["mask", "mask"])
