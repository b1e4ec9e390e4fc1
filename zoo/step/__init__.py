"""StepModel: a causal Keras recurrent model turned into a batched numpy step with explicit state.

`outputs, state = model.step(x, state)` advances a whole batch of devices by one reading each:
`x` is `[B, F]` raw readings, `state` is `[B, S]` (every recurrent layer's state concatenated), and
`outputs` is `[B, K]`, the row the Keras model would emit at that time step. Serving needs numpy only:
weights are copied out of the Keras layers once, at build time.

Example:
    >>> step_model = StepModel.from_keras(keras_model)
    >>> state = step_model.initial_state(batch=3)
    >>> for x_t in readings:                     # x_t: [3, F]
    ...     y_t, state = step_model.step(x_t, state)

Non-causal models (bidirectional layers, recurrent layers that only return their last state,
reversed recurrences, branching graphs) raise `NotStepable`; serve those with `WindowModel`.

The package, bottom up (only `convert` and `spec` touch Keras, and only inside their functions):

- `activations`: the activations in numpy, as Keras defines them;
- `ops`: one op per supported layer, its Keras equation in its docstring;
- `convert`: Keras layers → ops (`layer_chain`, `NotStepable`);
- `fileformat`: the step file (`.npz`), read and written with numpy alone;
- `engine`: `StepModel` (and `Stepper`, what every step engine shares);
- `shipped`: a model folder's precomputed engine (``step.npz`` + ``step.json``);
- `spec`: the state contract a card records (`state_spec`).
"""

from zoo.step.activations import _ACTIVATION_NAME as _ACTIVATION_NAME
from zoo.step.activations import _ACTIVATIONS as _ACTIVATIONS
from zoo.step.activations import Array
from zoo.step.convert import NotStepable, layer_chain
from zoo.step.engine import STEP_ROWS, StepModel, Stepper, one_blas_thread
from zoo.step.fileformat import STEP_FORMAT
from zoo.step.ops import _GRU as _GRU
from zoo.step.ops import _LSTM as _LSTM
from zoo.step.ops import _OP_TYPES as _OP_TYPES
from zoo.step.ops import _Affine as _Affine
from zoo.step.ops import _Elementwise as _Elementwise
from zoo.step.ops import _LayerNorm as _LayerNorm
from zoo.step.ops import _Norm as _Norm
from zoo.step.ops import _Op as _Op
from zoo.step.ops import _ParamAct as _ParamAct
from zoo.step.ops import _SimpleRNN as _SimpleRNN
from zoo.step.spec import cell_name, state_spec

__all__ = [
    "Array",
    "NotStepable",
    "STEP_FORMAT",
    "STEP_ROWS",
    "StepModel",
    "Stepper",
    "cell_name",
    "layer_chain",
    "one_blas_thread",
    "state_spec",
]
