"""Settings of ``export`` (plain Python: the flags are built from them without TensorFlow)."""
from dataclasses import dataclass

from kcompress.core.settings import Settings, option, positive, split_list
from kcompress.errors import require

TFLITE_MODES = ("float32", "float32-sparse", "dynamic", "float16", "int8", "int8-sparse")
FORMATS = ("tflite", "onnx")
DEFAULT_OPSET = 17


def _list_of(allowed, flag):
    def parse(value):
        items = tuple(split_list(value))
        bad = [v for v in items if v not in allowed]
        require(items and not bad, f"{flag}: unknown {', '.join(bad) or 'empty list'} (choose from {', '.join(allowed)})")
        return items
    return parse


@dataclass(frozen=True)
class ExportSettings(Settings):
    formats: tuple = option(FORMATS, "comma list of tflite, onnx", parse=_list_of(FORMATS, "--formats"))
    tflite_modes: tuple = option(TFLITE_MODES, "TFLite variants to write: float32, dynamic (int8 weights), "
                                                       "float16, int8 (full integer, calibrated on training inputs); "
                                                       "float32-sparse and int8-sparse store pruned kernels in "
                                                       "TFLite's sparse encoding (smaller raw files)",
                                 parse=_list_of(TFLITE_MODES, "--tflite-modes"))
    opset: int = option(DEFAULT_OPSET, "ONNX opset")
    tolerance: float = option(1e-4, "max |exported − Keras| allowed for float exports")

    def check(self):
        positive(self.tolerance, "--tolerance")
        require(7 <= self.opset <= 21, f"--opset must be between 7 and 21, got {self.opset}")
