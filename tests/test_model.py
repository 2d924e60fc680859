"""model.py: the three networks' shapes and parameter counts, each counted here by hand."""
import re

import pytest
import torch
import torch.nn.functional as F

from model import MODELS, CustomMLP, LeNet5, count_parameters, parameter_table

ROW = re.compile(r"^\s*(\w+)\s+([\d*+ ]*?)\s*=\s*([\d,]+)\s*$")


def docstring_rows(cls):
    """(layer, value of its arithmetic, stated count) for each line like 'conv1  1*6*5*5 + 6  =  156'."""
    rows = []
    for line in cls.__doc__.splitlines():
        match = ROW.match(line)
        if match:
            name, expression, stated = match.groups()
            value = sum(eval_product(term) for term in expression.split("+")) if expression else None
            rows.append((name, value, int(stated.replace(",", ""))))
    return rows


def eval_product(term):
    result = 1
    for factor in term.split("*"):
        result *= int(factor)
    return result


@pytest.mark.parametrize("name", MODELS)
def test_docstring_arithmetic_matches_the_layers(name):
    model = MODELS[name]()
    rows = docstring_rows(MODELS[name])
    *layers, (total_name, total_value, total_stated) = rows
    assert total_name == "total" and len(layers) >= 3
    for layer, value, stated in layers:
        assert value == stated, f"{layer}: arithmetic gives {value}, docstring says {stated}"
        actual = sum(p.numel() for p in getattr(model, layer).parameters())
        assert actual == stated, f"{layer} has {actual} parameters, docstring says {stated}"
    assert total_stated == sum(value for _, value, _ in layers) == count_parameters(model)
    layer_names = {layer for layer, _, _ in layers}
    assert layer_names == {n for n, m in model.named_modules() if list(m.parameters(recurse=False))}


def test_lenet5_has_exactly_61706_parameters():
    assert count_parameters(LeNet5()) == 61_706


def test_custom_mlp_is_within_one_percent_of_lenet5():
    assert abs(count_parameters(CustomMLP()) - 61_706) <= 0.01 * 61_706


def test_parameter_table_lists_every_layer_and_the_total():
    table = parameter_table(LeNet5()).splitlines()
    assert table[0].split("|")[1:-1] == [" layer ", " shape                            ", " params ", "  total "]
    assert [row.split("|")[1].strip() for row in table[2:]] == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert "weight (6, 1, 5, 5), bias (6,)" in table[2]
    assert table[-1].split("|")[-2].strip() == "61,706"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("batch", [1, 5])
def test_output_is_logits_for_each_image(name, batch):
    model = MODELS[name]().eval()
    out = model(torch.randn(batch, 1, 28, 28))
    assert out.shape == (batch, 10) and out.dtype == torch.float32


def test_lenet5_matches_the_textbook_order_of_relu_and_pooling():
    torch.manual_seed(0)
    model, x = LeNet5(), torch.randn(4, 1, 28, 28)
    h = F.max_pool2d(F.relu(model.conv1(x)), 2)
    h = F.max_pool2d(F.relu(model.conv2(h)), 2).flatten(1)
    expected = model.fc3(F.relu(model.fc2(F.relu(model.fc1(h)))))
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("name", MODELS)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    images, labels = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_regularized_with_everything_off_is_lenet5():
    torch.manual_seed(0)
    plain = LeNet5()
    torch.manual_seed(0)
    switched_off = MODELS["lenet5_regularized"](batch_norm=False, dropout=0.0)
    assert plain.state_dict().keys() == switched_off.state_dict().keys()
    for name, tensor in plain.state_dict().items():
        assert torch.equal(tensor, switched_off.state_dict()[name]), name
    x = torch.randn(8, 1, 28, 28)
    torch.testing.assert_close(plain(x), switched_off.train()(x), rtol=0, atol=0)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in switched_off.modules())
