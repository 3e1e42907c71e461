"""``carpose-det-int8``: the detector with 8-bit integer convolutions, for CPUs (ONNX Runtime, static QDQ).

    carpose-det-int8 models/carpose_det.onnx --calib ../shared/real_unlabelled --out models/carpose_det_int8.onnx

Why: on a CPU the detector is most of a frame's time (issue 22: 1.2-1.5x round 3's after its input
grew to 352 x 640). Integer convolutions run on the CPU's 8-bit dot-product units (x86 VNNI, ARM
dot product) in about 0.6-0.7x the float time, for the same AP (models/README.md, "INT8").

What is quantized: the convolutions of the backbone and the neck, weights per channel (int8) and
activations per tensor (uint8), ranges from unlabelled real photos. The detection head (the last
module: box and class branches, DFL and box decoding) stays float: quantizing its convolutions too
cost 0.03 KITTI AP in the probe, and its last convolutions *are* the scores and boxes. So do, by
default, YOLO11's first convolution (the raw pixels), SPPF and the C2PSA attention block (modules
0, 9 and 10): with them float the twin finds the cars the float detector finds on nuScenes (one
more than with them int8) for 0.05-0.1x more time (models/README.md, "INT8").

Calibration photos are letterboxed into the model's box as at run time. They must be unlabelled
photos: a validation folder is refused (the ranges would be fitted to the frames the model is scored
on). MinMax ranges are merged block by block, so memory stays bounded (ONNX Runtime would otherwise
keep every intermediate tensor of every photo: 256 photos filled 24 GB).

The operating point: integer features move the scores a little (more boxes over the default
threshold). The float head's class biases are shifted by one constant, chosen on the calibration
photos so that as many boxes (after NMS) pass the default threshold as pass it in the float model:
no label is used, and AP is unchanged by the shift.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from carpose.detect import onnx_input_size, size_hw
from carpose.eval.real_sources import refuse_validation_frames
from carpose.pipeline import INT8_KEY
from training.detector.network_input import as_tensor, image_files, letterboxed
from training.detector.soup import DEFAULT_CONF, threshold_shift

#: Calibration photos per block (each block's intermediate tensors are held at once: about 1 GB).
CALIB_STRIDE = 8
#: Calibration photos on which the int8 scores are matched to the float ones.
MATCH_PHOTOS = 128


def calibration_photos(folder: str | Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` photos drawn at random (fixed seed) from every image under ``folder``."""
    refuse_validation_frames(folder, "INT8 calibration photos")
    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no photos under {folder}")
    random.Random(seed).shuffle(files)
    return files[:count]


def _box_of(path: Path) -> tuple[int, int]:
    size, _ = onnx_input_size(path)
    if size is None:
        raise ValueError(f"{path}: not an exported detector with a known input size")
    return size_hw(size)


#: Modules (ultralytics' '/model.<i>/' index) kept float besides the head: YOLO11's stem, SPPF, C2PSA.
FLOAT_MODULES = (0, 9, 10)


def head_nodes(model) -> list[str]:
    """Names of the nodes of the last module (ultralytics names them '/model.<i>/...'): the Detect head."""
    index = [int(m.group(1)) for n in model.graph.node if (m := re.match(r"/model\.(\d+)/", n.name))]
    if not index:
        raise ValueError("not an ultralytics export: no '/model.<i>/' node names")
    last = f"/model.{max(index)}/"
    return [n.name for n in model.graph.node if n.name.startswith(last)]


def class_bias_names(model) -> list[str]:
    """The bias initializers of the last convolution of each scale's class branch (``cv3.<i>.2``)."""
    names = [n.input[2] for n in model.graph.node
             if n.op_type == "Conv" and len(n.input) == 3 and re.search(r"/cv3\.\d+/cv3\.\d+\.2/Conv$", n.name)]
    if not names:
        raise ValueError("no class-branch convolutions (cv3.<i>.2) found: not a YOLO11-style Detect head")
    return names


def shift_class_biases(model, shift: float) -> None:
    """Add ``shift`` to every class logit (in place): the order of the scores, hence AP, is unchanged."""
    from onnx import numpy_helper

    wanted = set(class_bias_names(model))
    for init in model.graph.initializer:
        if init.name in wanted:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + np.float32(shift), init.name))


def box_scores(onnx_path: str | Path, inputs: list[np.ndarray], iou: float = 0.5) -> np.ndarray:
    """The scores of the boxes the runtime would keep (ultralytics' NMS at IoU ``iou``, down to 0.01)
    over ``inputs``: what a threshold cuts, one score per box rather than per anchor."""
    import onnxruntime as ort
    import torch
    from ultralytics.utils.nms import non_max_suppression

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    kept = [non_max_suppression(torch.from_numpy(sess.run(None, {name: x})[0]), 0.01, iou)[0][:, 4].numpy()
            for x in inputs]
    return np.concatenate(kept) if kept else np.zeros(0)


def matching_shift(float_scores: np.ndarray, int8_scores: np.ndarray, conf: float = DEFAULT_CONF) -> float:
    """The logit shift after which as many int8 boxes reach ``conf`` as float ones do."""
    k = int((float_scores >= conf).sum())
    if k == 0 or k > len(int8_scores):
        return 0.0
    kth = float(np.sort(int8_scores)[::-1][k - 1])  # the k-th best int8 box should score conf
    return threshold_shift(min(max(kth, 1e-7), 1 - 1e-7), conf) + 1e-6


def float_nodes(model, modules: tuple[int, ...] = FLOAT_MODULES) -> list[str]:
    """The nodes that stay float: the head's and those of ``modules``."""
    prefixes = tuple(f"/model.{i}/" for i in modules)
    return head_nodes(model) + [n.name for n in model.graph.node if n.name.startswith(prefixes)]


def quantize_detector(src: str | Path, out: str | Path, calib: str | Path, count: int = 256,
                      match_scores: bool = True, progress: bool = True,
                      float_modules: tuple[int, ...] = FLOAT_MODULES) -> dict:
    """Write the int8 detector to ``out``; returns what was done (also written into its metadata)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise FileNotFoundError(f"no detector at {src}")
    box = _box_of(src)
    # Each photo is read once and kept letterboxed (uint8, ~0.7 MB at 352 x 640): calibration and the
    # score match both use it.
    files = calibration_photos(calib, count)
    photos = [letterboxed(im, box) for f in tqdm(files, desc="reading photos", unit="photo", disable=not progress)
              if (im := cv2.imread(str(f), cv2.IMREAD_COLOR)) is not None]
    photos = photos[:len(photos) - len(photos) % CALIB_STRIDE]
    if not photos:
        raise ValueError(f"fewer than {CALIB_STRIDE} readable photos under {calib}")
    bar = tqdm(total=len(photos), desc="calibration photos", unit="photo", disable=not progress)

    class Photos(CalibrationDataReader):
        """The photos in blocks (``set_range``): ONNX Runtime merges each block's ranges and forgets its
        tensors, where one pass would hold every intermediate tensor of every photo in memory."""

        def __init__(self) -> None:
            self.block = iter(photos)

        def __len__(self) -> int:
            return len(photos)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.block = iter(photos[start_index:end_index])

        def get_next(self) -> dict | None:
            photo = next(self.block, None)
            if photo is None:
                return None
            bar.update()
            return {"images": as_tensor(photo)}

    with tempfile.TemporaryDirectory(prefix="carpose_int8_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph fusions first, as ONNX Runtime advises; symbolic shape inference
        # cannot resolve a dynamic-size export, so it is skipped.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        raw = Path(tmp) / "int8.onnx"
        quantize_static(str(pre), str(raw), Photos(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["Conv"],
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes(model, float_modules),
                        extra_options={"CalibStridedMinMax": CALIB_STRIDE})
        bar.close()
        qmodel = onnx.load(str(raw))
        shift = 0.0
        if match_scores:
            sample = [as_tensor(photo) for photo in photos[:MATCH_PHOTOS]]
            shift = matching_shift(box_scores(src, sample), box_scores(raw, sample))
            shift_class_biases(qmodel, shift)
    info = {"calibration_photos": str(calib), "count": len(photos), "method": "MinMax, QDQ, per-channel weights",
            "float_head": True, "float_modules": list(float_modules), "class_logit_shift": round(shift, 6),
            "from": str(src),
            "from_sha256": hashlib.sha256(src.read_bytes()).hexdigest()}
    # ultralytics reads names, stride, task and the input box from the metadata: keep the source's
    # (carpose's provenance included), and add how this file was made.
    del qmodel.metadata_props[:]
    for prop in onnx.load(str(src), load_external_data=False).metadata_props:
        qmodel.metadata_props.add(key=prop.key, value=prop.value)
    qmodel.metadata_props.add(key=INT8_KEY, value=json.dumps(info))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save(qmodel, str(tmp_out))
    tmp_out.replace(out)
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-int8", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("detector", help="an exported detector (.onnx), e.g. models/carpose_det.onnx")
    p.add_argument("--calib", required=True, help="a folder of unlabelled real photos (searched recursively)")
    p.add_argument("--count", type=int, default=256, help="calibration photos drawn from it (fixed seed)")
    p.add_argument("--no-match-scores", action="store_true",
                   help="keep the int8 scores as they come (no class-logit shift to the float operating point)")
    p.add_argument("--float-modules", type=int, nargs="*", default=list(FLOAT_MODULES), metavar="I",
                   help="ultralytics module indices kept float besides the head (default: YOLO11's stem, SPPF, C2PSA)")
    p.add_argument("--out", required=True, help="the int8 ONNX path")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        info = quantize_detector(args.detector, args.out, args.calib, args.count, not args.no_match_scores,
                                 not args.quiet, tuple(args.float_modules))
    except (FileNotFoundError, ValueError) as exc:  # ValidationLeakError too
        print(f"carpose-det-int8: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"onnx": args.out, **info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
