"""The ModelSpec contract: validation at declaration, dimensions, example inputs."""

import pytest
import torch
from torch import nn

from harness import Dim, Input, ModelSpec
from harness.errors import ShapeError
from harness.models.spec import SpecError, flatten_outputs, mean_of_outputs


def _linear(width: int = 4) -> nn.Module:
    return nn.Linear(width, 2)


def make(**overrides) -> ModelSpec:
    fields = dict(
        name="toy",
        constructor=_linear,
        inputs=[Input("x", "(B, N)")],
        outputs=["(B, 2)"],
        dims={"N": Dim(4, kwarg="width")},
    )
    fields.update(overrides)
    return ModelSpec(**fields)


def test_spec_builds_the_model_with_dimension_keywords():
    spec = make()
    assert spec.default_kwargs == {"width": 4}
    model = spec.build({"N": 6})
    assert model.in_features == 6
    assert spec.expected_shapes(3, {"N": 6}) == [(3, 2)]
    (x,) = spec.example_inputs(3, {"N": 6})
    assert x.shape == (3, 6) and x.dtype == torch.float32


def test_spec_is_frozen():
    with pytest.raises(AttributeError):
        make().name = "other"


@pytest.mark.parametrize("name", ["Toy", "toy-net", "1toy", "", "toy net"])
def test_names_must_be_stable_lowercase_identifiers(name):
    with pytest.raises(SpecError, match="lowercase"):
        make(name=name)


def test_unsafe_output_expression_names_model_and_expression():
    with pytest.raises(ShapeError) as info:
        make(outputs=["(B, __import__('os').getpid())"])
    message = str(info.value)
    assert "model 'toy'" in message and "__import__" in message and "function call" in message


def test_undeclared_dimension_is_rejected_with_the_declared_ones():
    with pytest.raises(ShapeError, match=r"undeclared dimension\(s\) H.*declared: B, N"):
        make(outputs=["(B, H)"])


def test_batch_name_is_reserved():
    with pytest.raises(SpecError, match="batch size"):
        make(dims={"B": 3})


def test_index_inputs_need_an_upper_bound_and_stay_within_it():
    with pytest.raises(SpecError, match="high"):
        Input("tokens", "(B, T)", dtype="index")
    spec = ModelSpec(
        name="emb",
        constructor=lambda vocab: nn.Embedding(vocab, 3),
        inputs=[Input("tokens", "(B, T)", dtype="index", high="V")],
        outputs=["(B, T, 3)"],
        dims={"V": Dim(11, kwarg="vocab"), "T": 5},
    )
    (tokens,) = spec.example_inputs(4)
    assert tokens.dtype == torch.int64 and tokens.shape == (4, 5)
    assert 0 <= int(tokens.min()) and int(tokens.max()) < 11


def test_bad_dtype_kind_is_rejected():
    with pytest.raises(SpecError, match="dtype"):
        Input("x", "(B, 3)", dtype="complex")


def test_constraint_violation_names_model_values_and_constraint():
    spec = make(dims={"N": Dim(4, kwarg="width")}, constraints=["N % 2 == 0"])
    with pytest.raises(ShapeError) as info:
        spec.resolve_dims({"N": 5})
    assert str(info.value) == (
        "model 'toy': N=5 breaks its constraint 'N % 2 == 0'; choose values that satisfy it"
    )


def test_a_constraint_that_cannot_be_evaluated_names_its_model():
    spec = make(dims={"N": Dim(4, kwarg="width")}, constraints=["N // 0 == 1"])
    with pytest.raises(ShapeError) as info:
        spec.resolve_dims()
    assert str(info.value) == (
        "model 'toy': expression 'N // 0 == 1': division by zero; fix "
        "the model's constraints (or skip its plugin with "
        "--disable-plugin)"
    )


def test_unknown_dimension_override_lists_the_real_ones():
    with pytest.raises(ShapeError, match="no dimension 'H'.*its dimensions: N"):
        make().resolve_dims({"H": 3})


@pytest.mark.parametrize("bad", [0, -1, 2.5, "8"])
def test_dimension_values_must_be_positive_integers(bad):
    with pytest.raises(ShapeError, match="positive integer"):
        make().resolve_dims({"N": bad})


def test_dimension_and_kwargs_cannot_set_the_same_keyword():
    with pytest.raises(SpecError, match="'width' is set both"):
        make(kwargs={"width": 3})


@pytest.mark.parametrize("sizes", [(), (0,), (1.5,)])
def test_batch_sizes_must_be_positive_integers(sizes):
    with pytest.raises(SpecError, match="batch_sizes"):
        make(batch_sizes=sizes)


def test_nested_outputs_flatten_depth_first():
    a, b, c = torch.zeros(1), torch.zeros(2), torch.zeros(3)
    assert [t.shape[0] for t in flatten_outputs((a, (b, c)))] == [1, 2, 3]
    with pytest.raises(TypeError, match="dict"):
        flatten_outputs({"a": a})


def test_default_loss_is_the_mean_of_float_outputs():
    loss = mean_of_outputs([torch.full((2, 2), 3.0), torch.ones(4), torch.arange(3)])
    assert loss.item() == 4.0
