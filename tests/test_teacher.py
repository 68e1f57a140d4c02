"""Sharma & Kaplan's teacher network: shapes, weight scale, linear embedding, seeded sampling."""

import numpy as np
import pytest
import torch

from scalinglab.teacher_student.teacher import Teacher


def test_layers_and_weight_scale_follow_the_seed():
    teacher = Teacher.create(6, 9, seed=3)
    assert [tuple(w.shape) for w in teacher.weights] == [(6, 9), (9, 600), (600, 600), (600, 1)]
    big = Teacher.create(6, 9, seed=3, hidden=2000)
    # weights N(0, 1/fan_in): the empirical variance of the 2000x2000 layer is 1/2000 within 1%
    assert big.weights[2].var().item() * 2000 == pytest.approx(1.0, rel=0.01)


def test_x_is_a_linear_image_of_t_and_y_its_relu_readout():
    teacher = Teacher.create(4, 9, seed=0)
    t = torch.randn(100, 4)
    x, y = teacher.forward(t)
    torch.testing.assert_close(x, t @ teacher.weights[0])  # identity activation at the w-unit layer
    hidden = torch.relu(torch.relu(x @ teacher.weights[1]) @ teacher.weights[2])
    torch.testing.assert_close(y, (hidden @ teacher.weights[3]).squeeze(-1))  # identity output, no bias
    assert torch.all(teacher.forward(torch.zeros(1, 4))[1] == 0)  # bias-free: 0 maps to 0


@pytest.mark.parametrize("d, width, rank", [(3, 9, 3), (8, 9, 8), (12, 9, 9)])
def test_manifold_dimension_is_min_of_d_and_width(d, width, rank):
    if d >= width:
        with pytest.warns(UserWarning, match="embedding width"):
            teacher = Teacher.create(d, width, seed=1)
    else:
        teacher = Teacher.create(d, width, seed=1)
    x, _ = teacher.sample(500, seed=2)
    assert teacher.manifold_dimension == rank
    singular = np.linalg.svd(x.double().numpy(), compute_uv=False)
    assert (singular > 1e-4 * singular[0]).sum() == rank  # float32 noise sits ~1e-7 below the top


def test_sampling_is_seeded_and_chunking_does_not_change_it():
    teacher = Teacher.create(4, 9, seed=0)
    x1, y1 = teacher.sample(1000, seed=5)
    x2, y2 = teacher.sample(1000, seed=5, chunk=1000)
    torch.testing.assert_close(x1, x2)
    torch.testing.assert_close(y1, y2)
    x3, _ = teacher.sample(1000, seed=6)
    assert not torch.allclose(x1, x3)
    restored = Teacher.from_state_dict(teacher.state_dict())
    torch.testing.assert_close(restored.forward(x1[:5, :4] * 0 + 1)[1], teacher.forward(x1[:5, :4] * 0 + 1)[1])
