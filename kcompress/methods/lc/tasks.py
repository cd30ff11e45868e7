"""LC tasks: which weights are compressed, and how.

A task maps layers to one compression or a sum of them. As a string (``--task``)::

    LAYERS:COMPRESSION[:key=value,...][+COMPRESSION[:key=value,...]...]

    all:prune-l0:kappa=0.05            the kernels of all target layers jointly, as one vector
    each:quant:k=2                     one task per target layer, each with its own codebook
    dense_3:quant:k=2                  one layer
    dense_1,dense_2:quant:k=4          several layers jointly (one codebook)
    dense_2:lowrank:rank=10            a layer's kernel as a matrix (low-rank types: Dense, Conv2D)
    sep:quant:k=4                      a separable convolution: depthwise and pointwise kernels jointly
    all:quant:k=2+prune-l0:kappa=0.01  an additive combination (codebook + sparse correction)

or in a YAML file: a list (or ``tasks:`` list) of such strings or of mappings
``{layers: all | [dense_1, ...], compression: "quant:k=2" | {quant: {k: 2}, prune-l0: {kappa: 0.01}}}``.

Parsing knows nothing of models; :func:`resolve` turns specs into :class:`Task` objects
for a model's kernel shapes, checking layer names and that every compression fits.
"""
import re
from dataclasses import dataclass

import numpy as np

from kcompress.core.yamlfile import read_yaml
from kcompress.errors import UsageError, require
from kcompress.methods.lc.types import additive, lowrank, pruning, quantization  # noqa: F401  (register the types)
from kcompress.methods.lc.types.additive import Additive
from kcompress.methods.lc.types.base import REGISTRY

SELECTORS = ("all", "each")


@dataclass(frozen=True)
class TaskSpec:
    """A parsed task: a layer selector (``all``, ``each`` or layer names) and its parts
    ``((name, {param: value}), ...)``, summed when more than one."""

    layers: tuple
    parts: tuple
    text: str


def _part(text, where):
    name, _, args = text.partition(":")
    name = name.strip()
    require(name in REGISTRY, f"{where}: unknown compression {name!r} (one of {', '.join(REGISTRY)})")
    params = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        require(eq and key.strip() and value.strip(), f"{where}: expected key=value, got {item!r}")
        params[key.strip()] = value.strip()
    return name, params


def parse_compression(text, where):
    """``"quant:k=2+prune-l0:kappa=0.01"`` -> ``(("quant", {"k": "2"}), ("prune-l0", {...}))``."""
    require(text and text.strip(), f"{where}: no compression given (e.g. prune-l0:kappa=0.05)")
    return tuple(_part(p, where) for p in re.split(r"\+(?=\s*[A-Za-z])", text.strip()))


def _layers(value, where):
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value)]
    require(names and all(names), f"{where}: empty layer name in {value!r}")
    require(len(set(names)) == len(names), f"{where}: a layer is named twice in {value!r}")
    require(len(names) == 1 or not set(names) & set(SELECTORS), f"{where}: 'all'/'each' cannot be mixed with layer names")
    return tuple(names)


def parse_task(text, where=None):
    """A :class:`TaskSpec` from a task string (UsageError naming the problem, and ``where`` the
    task came from, if malformed)."""
    where = where or f"--task {text!r}"
    layers, sep, rest = str(text).partition(":")
    require(sep and layers.strip(), f"{where}: expected LAYERS:COMPRESSION, e.g. all:prune-l0:kappa=0.05")
    spec = TaskSpec(_layers(layers, where), parse_compression(rest, where), str(text))
    make_compression(spec, where)  # fail now on bad parameters
    return spec


def with_param(texts, name, value):
    """Task strings ``texts`` with parameter ``name`` set to ``value`` wherever they set it
    (``kappa``, ``k``, ...); exit 2 if none does, as the sweep would then change nothing."""
    pattern = re.compile(rf"(?<=[:,])\s*{re.escape(name)}\s*=[^,+]*")
    out = tuple(pattern.sub(f"{name}={value}", str(t)) for t in texts)
    require(any(pattern.search(str(t)) for t in texts),
            f"--sweep {name}: no --task sets {name} (tasks: {'; '.join(map(str, texts)) or 'none'}); "
            "a swept task parameter must appear in a --task string")
    return out


def _from_mapping(item, where):
    require(set(item) <= {"layers", "compression"} and "compression" in item,
            f"{where}: a task mapping needs 'compression' (and 'layers'), got keys {sorted(item)}")
    comp = item["compression"]
    if isinstance(comp, dict):
        parts = tuple((str(n), {str(k): v for k, v in (p or {}).items()}) for n, p in comp.items())
        for name, _ in parts:
            require(name in REGISTRY, f"{where}: unknown compression {name!r} (one of {', '.join(REGISTRY)})")
    else:
        parts = parse_compression(str(comp), where)
    spec = TaskSpec(_layers(item.get("layers", "all"), where), parts, f"{where}")
    make_compression(spec, where)
    return spec


def load_tasks_file(path):
    """The task specs of a YAML file (see the module docstring)."""
    where = f"--tasks-file {path}"
    doc = read_yaml(path, where)
    items = doc.get("tasks") if isinstance(doc, dict) else doc
    require(isinstance(items, list) and items, f"{where}: expected a non-empty list of tasks (or 'tasks:' list)")
    specs = []
    for i, item in enumerate(items, start=1):
        require(isinstance(item, (str, dict)), f"{where}: task {i} must be a string or a mapping")
        entry = f"{where}, task {i}"
        specs.append(parse_task(item, f"{entry} {item!r}") if isinstance(item, str) else _from_mapping(item, entry))
    return specs


def make_compression(spec, where=None):
    """A fresh compression object for ``spec`` (an :class:`Additive` when it has several parts);
    a bad parameter is reported with ``where`` the task came from (default: its ``--task``)."""
    try:
        parts = [REGISTRY[name](**params) for name, params in spec.parts]
        return parts[0] if len(parts) == 1 else Additive(parts)
    except UsageError as e:
        raise UsageError(f"{where or f'--task {spec.text!r}'}: {e}") from None


@dataclass
class Task:
    """Compression of the kernels of ``layers`` (``shapes``: one per kernel, a layer's kernels in
    the order of its weights): jointly as one vector, or one kernel as a matrix."""

    layers: tuple
    shapes: tuple
    compression: object

    @property
    def matrix(self):
        return self.compression.needs_matrix

    def join(self, arrays):
        """The task's array from the layers' kernels: a matrix (rows = all but the last axis)
        or the concatenated flattened kernels."""
        if self.matrix:
            return arrays[0].reshape(-1, self.shapes[0][-1])
        return np.concatenate([a.ravel() for a in arrays])

    def split(self, x):
        """The inverse of :meth:`join`: one array per layer, in the kernels' shapes."""
        sizes = np.cumsum([int(np.prod(s)) for s in self.shapes])[:-1]
        return [p.reshape(s) for p, s in zip(np.split(x.ravel(), sizes), self.shapes)]

    def describe(self):
        return f"{','.join(self.layers)}:{self.compression.describe()}"


def resolve(specs, kernel_shapes, targets, matrices=None):
    """:class:`Task` objects for ``specs`` on a model whose compressible kernels have
    ``kernel_shapes`` (layer name -> its kernel's shape, or the list of its kernels' shapes: a
    separable convolution has two, depthwise then pointwise, compressed jointly as one vector);
    ``targets`` are the layers ``all``/``each`` mean; ``matrices`` the layers a matrix task (low
    rank) may take (unset: every layer with one kernel). ``each`` skips the others with a notice;
    naming one is a usage error."""
    shapes = {name: _shapes(s) for name, s in kernel_shapes.items()}
    single = {name for name, s in shapes.items() if len(s) == 1}
    matrices = single if matrices is None else single & set(matrices)
    tasks, used = [], {}
    for spec in specs:
        where = f"--task {spec.text!r}"
        for group in _groups(spec, targets, matrices, where):
            unknown = [n for n in group if n not in shapes]
            require(not unknown, f"{where}: no layer with a kernel named {', '.join(unknown)} "
                                 f"(layers: {', '.join(shapes)})")
            twice = [n for n in group if n in used]
            require(not twice, f"{where}: layer {', '.join(twice)} is already compressed by another task")
            used.update({n: spec.text for n in group})
            task = Task(group, tuple(s for n in group for s in shapes[n]), make_compression(spec))
            require(not task.matrix or len(group) == 1,
                    f"{where}: {task.compression.name} compresses one layer's matrix; use 'each' or one layer name")
            require(not task.matrix or group[0] in matrices,
                    f"{where}: layer {group[0]} {_not_a_matrix(shapes[group[0]])}")
            try:
                task.compression.validate_for(task.join([np.zeros(s, np.float32) for s in task.shapes]).shape)
            except UsageError as e:
                raise UsageError(f"{where} on {','.join(group)}: {e}") from None
            tasks.append(task)
    return tasks


def _shapes(value):
    """One layer's kernel shapes as a tuple of shapes, given one shape or a list of them."""
    value = tuple(value)
    return (value,) if all(isinstance(d, (int, np.integer)) for d in value) else tuple(tuple(s) for s in value)


def _groups(spec, targets, matrices, where):
    """The layer groups of ``spec``: one per target (``each``), all targets, or the named layers.
    A matrix task under ``each`` takes only the layers in ``matrices``, with a notice for the others."""
    if spec.layers == ("all",):
        return [tuple(targets)]
    if spec.layers != ("each",):
        return [spec.layers]
    if make_compression(spec).needs_matrix:
        for name in (n for n in targets if n not in matrices):
            print(f"{where}: skipped layer {name}: its kernel is not one matrix that can be factorised")
        targets = [n for n in targets if n in matrices]
        require(targets, f"{where}: no target layer has a kernel that can be factorised (one Dense or Conv2D kernel)")
    return [(name,) for name in targets]


def _not_a_matrix(shapes):
    """Why a layer's kernels cannot be one low-rank matrix."""
    if len(shapes) > 1:
        return "has two kernels (depthwise and pointwise); a low-rank task takes one Dense or Conv2D kernel"
    return "is not a Dense or Conv2D layer; a low-rank task takes one kernel that can be factorised"
