"""``Network.from_torch`` / ``net.to_torch()``: the converted network's derivatives against the torch module's own,
computed by torch on the ``nn.Module`` itself (``torch.func.functional_call``), never through ``torch_ref``."""
import os
import subprocess
import sys

import numpy as np
import pytest

import manual
from xval import Network
from xval.errors import ArgumentError

torch = pytest.importorskip("torch")
nn = torch.nn
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_hessian(module, loss_fn, X, target):
    """The ``(P, P)`` Hessian of ``loss_fn(module(X), target)`` in the module's own parameter order."""
    names = [name for name, _ in module.named_parameters()]
    shapes = [p.shape for _, p in module.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for _, p in module.named_parameters()])

    def objective(theta):
        params, start = {}, 0
        for name, shape in zip(names, shapes):
            size = int(np.prod(shape))
            params[name] = theta[start:start + size].reshape(shape)
            start += size
        return loss_fn(torch.func.functional_call(module, params, (X,)), target)

    return torch.func.hessian(objective)(flat).numpy()


def sample_module():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Softplus(), nn.Linear(5, 5), nn.Linear(5, 3)).double()


def test_mse_hessian_is_two_over_n_out_times_the_suites():
    module = sample_module()
    net = Network.from_torch(module, loss="mse")
    assert net.activations == ("tanh", "softplus", "identity", "identity")  # consecutive Linear: identity between
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((7, 4)), rng.standard_normal((7, 3))
    expected = module_hessian(module, nn.MSELoss(), torch.as_tensor(X), torch.as_tensor(Y))
    ours = manual.hessian(net, X, Y) * 2 / 3
    assert np.linalg.norm(ours - expected) <= 1e-12 * np.linalg.norm(expected)


def test_cross_entropy_with_class_indices_equals_the_suites_on_one_hot_rows():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Linear(3, 8), nn.Sigmoid(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).double()
    net = Network.from_torch(module, loss="cross_entropy")
    rng = np.random.default_rng(2)
    X, classes = rng.standard_normal((9, 3)), rng.integers(0, 4, size=9)
    expected = module_hessian(module, nn.CrossEntropyLoss(), torch.as_tensor(X), torch.as_tensor(classes))
    ours = manual.hessian(net, X, np.eye(4)[classes])
    assert np.linalg.norm(ours - expected) <= 1e-12 * np.linalg.norm(expected)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "softplus"])
def test_to_torch_computes_the_same_outputs_and_converts_back(activation):
    net = Network.random([3, 7, 7, 2], activations=activation, loss="mse", seed=3)
    module = net.to_torch()
    X = np.random.default_rng(4).standard_normal((5, 3))
    with torch.no_grad():
        outputs = module(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(outputs, manual.forward(net, X), rtol=1e-13, atol=1e-15)
    back = Network.from_torch(module, loss="mse")
    assert back.activations == net.activations and back.dtype == np.float64
    np.testing.assert_array_equal(back.to_vector(), net.to_vector())


def test_float32_modules_stay_float32():
    net = Network.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), loss="mse")
    assert net.dtype == np.float32 and net.to_torch()[0].weight.dtype == torch.float32


@pytest.mark.parametrize("module, message", [
    (nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1)), r"module 1 \(GELU\) is not supported"),
    (nn.Sequential(nn.Tanh(), nn.Linear(2, 1)), r"module 0 \(Tanh\) comes before any Linear"),
    (nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.ReLU()), r"module 2 \(ReLU\) follows another activation \(tanh\)"),
    (nn.Sequential(nn.Linear(2, 3), nn.Softplus(beta=2)), r"module 1 is Softplus\(beta=2"),
    (nn.Linear(2, 3), r"takes an nn.Sequential, got Linear"),
    (nn.Sequential(), r"holds no nn.Linear"),
])
def test_unsupported_modules_are_refused_naming_the_module_and_its_position(module, message):
    with pytest.raises(ArgumentError, match=message):
        Network.from_torch(module, loss="mse")


def test_a_torch_loss_module_is_refused_with_the_correspondence():
    with pytest.raises(ArgumentError, match="2 / n_L times 'mse'"):
        Network.from_torch(nn.Sequential(nn.Linear(2, 1)), loss=nn.MSELoss())


def test_xval_imports_without_torch():
    blocker = ("import sys\nclass Block:\n def find_spec(self, name, path=None, target=None):\n"
               "  if name.split('.')[0] == 'torch': raise ImportError('blocked')\nsys.meta_path.insert(0, Block())\n"
               "import xval\nnet = xval.Network.random([2, 3, 1])\n"
               "try:\n net.to_torch()\nexcept xval.EngineUnavailableError as exc:\n print('refused:', exc)\n")
    done = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: converting to or from torch needs torch") and "pip install torch" in done.stdout
