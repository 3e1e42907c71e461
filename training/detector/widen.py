"""``carpose-det-widen``: the shipped YOLO11n detector grown into a YOLO11s-width network that gives the
same boxes (Net2WiderNet), for fine-tuning.

    carpose-det-widen models/carpose_det.onnx --out runs/widen/det_s.pt \
        [--calib ../shared/real_unlabelled] [--noise 0.01] [--export runs/widen/det_s.onnx]
    carpose-train-det SCENES.h5 --init runs/widen/det_s.pt --arch yolo11s.yaml --lr0 0.0005 ...

Why: the detector lacks capacity (issue 42) and a 2-core CPU cannot train a YOLO11s from random weights
in any useful time. Net2WiderNet (Chen, Goodfellow & Shlens 2016) widens a trained network without
changing its function, so training starts where the shipped detector is, with twice its channels.

How: every feature map of the wide network gets a *channel map*, the narrow channel each wide channel
copies. A convolution's output channel o copies narrow output channel ``map_out[o]`` (its BatchNorm
copied with it); its input weights are the narrow ones of ``map_in[i]`` divided by how many wide
channels copy that narrow channel, so the sum over copies is the narrow sum: the same pre-activation,
the same BatchNorm output, the same SiLU, the same copies downstream. The rules per ultralytics module:

* ``Conv`` / ``nn.Conv2d``: as above; a depthwise one (``DWConv``, the attention's ``pe``) reads only
  its own channel, so it is copied channel for channel, unsplit (its input and output maps are one).
* ``C3k2`` / ``C2f``: ``cv1``'s output is chunked in two halves, so its map is two maps side by side;
  ``cv2`` reads the concatenation of the chunks and the blocks' outputs. ``C3k`` (a ``C3``): ``cv3``
  reads ``[m(cv1(x)), cv2(x)]``. ``Bottleneck`` with a shortcut keeps its input's map (the sum needs it).
* ``SPPF``: max pooling is per channel, so the pooled copies keep ``cv1``'s map.
* ``C2PSA`` / ``PSABlock`` / ``Attention``: ultralytics makes ``num_heads = max(c // 64, 1)`` heads of
  ``head_dim = c // num_heads`` channels with ``key_dim = head_dim / 2`` (YOLO11n: c 128, 2 heads; YOLO11s:
  c 256, 4 heads; both head_dim 64, key_dim 32). Channels are mapped in whole heads: wide head h is a copy
  of narrow head ``h mod 2``, its q / k / v rows copied (``qkv``'s output is laid out head by head, each
  [q, k, v]), so each wide head computes exactly its narrow head's attention with the same scale
  ``key_dim ** -0.5``. Where the wide head_dim would differ from the narrow one (c < 64 in either network)
  a head cannot be a copy of one head: that is refused (:class:`WideningError`), not approximated.
* ``Concat``: the inputs' maps side by side, each narrow index offset by the narrow widths before it.
  ``nn.Upsample``: the input's map.
* ``Detect``: the box branch's hidden width is ``max(16, ch[0] // 4, 4 * reg_max)`` = 64 for both n and s
  (so it is not widened, only its input split); the class branch's is ``max(ch[0], min(nc, 100))`` =
  64 -> 128. The output convolutions keep their channels (64 box bins, 1 class); the DFL is copied.

Every tensor of the wide network is written (checked): nothing keeps a random initial value. Doubling
makes every split a division by 2 or 1, exact in floating point, so the only difference from the narrow
network is the order of float sums (measured in tests/test_det_widen.py). Copies receive identical
gradients and would stay copies under training (Adam's updates are also blind to an uneven split):
``--noise`` adds Gaussian noise of that fraction of each weight tensor's standard deviation to break the
symmetry, at a small cost in equivalence (measured there too); 0, the default, keeps the function.

An ONNX source is read back into weights by training.detector.warm_start (``onnx_to_pt``, as
``carpose-train-det --init`` does, ultralytics' checkpoints hold FP16), with ``--calib`` photos its
BatchNorms calibrated, which the widening copies: train a widened ONNX detector from a calibrated one, or
its identity BatchNorms rescale every layer at the first training step (see warm_start).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import carpose.detect  # noqa: F401  (makes ultralytics offline before it is imported)
from carpose.eval.real_sources import refuse_validation_frames

#: The network the shipped detector is, and the one it is widened into.
NARROW_ARCH = "yolo11n.yaml"
WIDE_ARCH = "yolo11s.yaml"
#: The box the shipped detector is exported for (frames fitted into it, height and width free).
SHIPPED_BOX = (352, 640)


class WideningError(ValueError):
    """The two networks cannot be matched channel for channel (another layout, or attention heads of
    another size)."""


@dataclass(frozen=True)
class ChannelMap:
    """Which narrow channel each wide channel of one feature map copies (``index``, one per wide channel)
    among ``narrow`` narrow channels."""

    index: torch.Tensor
    narrow: int

    @property
    def wide(self) -> int:
        return len(self.index)

    def counts(self) -> torch.Tensor:
        """How many wide channels copy each narrow channel, per wide channel: what a reader divides by."""
        return torch.bincount(self.index, minlength=self.narrow)[self.index]


def spread(narrow: int, wide: int) -> ChannelMap:
    """The map of a freshly computed feature map: wide channel j copies narrow channel j mod ``narrow``
    (the first ``narrow`` are the originals, then copies): every narrow channel at least once."""
    if wide < narrow:
        raise WideningError(f"cannot widen {narrow} channels into {wide}")
    return ChannelMap(torch.arange(wide) % narrow, narrow)


def identity(channels: int) -> ChannelMap:
    return ChannelMap(torch.arange(channels), channels)


def side_by_side(*maps: ChannelMap) -> ChannelMap:
    """The map of a concatenation along channels: each part's narrow indices offset by the narrow widths
    before it (a ``Concat``, a ``chunk``/``split`` read backwards)."""
    parts, offset = [], 0
    for m in maps:
        parts.append(m.index + offset)
        offset += m.narrow
    return ChannelMap(torch.cat(parts), offset)


def head_map(narrow_heads: int, wide_heads: int, width: int) -> ChannelMap:
    """The map of a feature laid out in heads of ``width`` channels: wide head h is a whole copy of
    narrow head h mod ``narrow_heads``, channel for channel."""
    heads = spread(narrow_heads, wide_heads).index
    return ChannelMap((heads[:, None] * width + torch.arange(width)).flatten(), narrow_heads * width)


class Widener:
    """Writes a wide network's tensors from a narrow one's, module by module, and records which wide
    tensors it wrote (:meth:`check_complete`). ``noise``: see the module docstring."""

    def __init__(self, noise: float = 0.0, seed: int = 0) -> None:
        self.noise = float(noise)
        self.generator = torch.Generator().manual_seed(seed)
        self.written: set[int] = set()

    def _set(self, dest: torch.Tensor, value: torch.Tensor) -> None:
        if dest.shape != value.shape:
            raise WideningError(f"shape {tuple(value.shape)} computed for a tensor of {tuple(dest.shape)}")
        dest.copy_(value)
        self.written.add(id(dest))

    def conv2d(self, n: nn.Conv2d, w: nn.Conv2d, m_in: ChannelMap, m_out: ChannelMap) -> None:
        """A plain convolution: output rows copied along ``m_out``, input columns along ``m_in`` divided by
        their copy counts; a depthwise one (groups = channels) copied along its one map, unsplit."""
        if (n.in_channels, n.out_channels, w.in_channels, w.out_channels) != (m_in.narrow, m_out.narrow,
                                                                               m_in.wide, m_out.wide):
            raise WideningError(f"{n} -> {w}: maps of {m_in.narrow}->{m_in.wide} / {m_out.narrow}->{m_out.wide}")
        if n.groups == 1 and w.groups == 1:
            weight = n.weight[m_out.index][:, m_in.index] / m_in.counts().view(1, -1, 1, 1).to(n.weight.dtype)
        elif n.groups == n.in_channels == n.out_channels and w.groups == w.in_channels == w.out_channels:
            if not torch.equal(m_in.index, m_out.index):
                raise WideningError(f"{n}: a depthwise convolution needs one map for its input and output")
            weight = n.weight[m_out.index]
        else:
            raise WideningError(f"{n} -> {w}: grouped convolutions other than depthwise have no rule")
        if self.noise > 0:
            weight = weight + self.noise * n.weight.std() * torch.randn(
                weight.shape, generator=self.generator, dtype=weight.dtype)
        self._set(w.weight, weight)
        if n.bias is not None:
            self._set(w.bias, n.bias[m_out.index])

    def batchnorm(self, n: nn.BatchNorm2d, w: nn.BatchNorm2d, m: ChannelMap) -> None:
        """Every statistic and affine parameter copied with its channel (the copies see the same values)."""
        if abs(n.eps - w.eps) > 0:
            raise WideningError(f"BatchNorm eps {n.eps} vs {w.eps}")
        for name in ("weight", "bias", "running_mean", "running_var"):
            self._set(getattr(w, name), getattr(n, name)[m.index])
        w.num_batches_tracked.copy_(n.num_batches_tracked)
        self.written.add(id(w.num_batches_tracked))

    def conv(self, n, w, m_in: ChannelMap, m_out: ChannelMap | None = None) -> ChannelMap:
        """ultralytics ``Conv`` (convolution, BatchNorm, activation); returns its output's map (``m_out``,
        or a fresh :func:`spread`)."""
        m_out = m_out or spread(n.conv.out_channels, w.conv.out_channels)
        self.conv2d(n.conv, w.conv, m_in, m_out)
        self.batchnorm(n.bn, w.bn, m_out)
        return m_out

    def check_complete(self, wide: nn.Module) -> None:
        """Refuse a wide network with any parameter or buffer left at its initial value."""
        missed = [name for name, t in [*wide.named_parameters(), *wide.named_buffers()] if id(t) not in self.written]
        if missed:
            raise WideningError(f"{len(missed)} wide tensors have no rule: {missed[:5]}")


# ----- one function per ultralytics module: (widener, narrow, wide, input map(s)) -> output map -----

def widen_bottleneck(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``Bottleneck``: two convolutions; with its shortcut the output must keep the input's map."""
    if n.add != w.add:
        raise WideningError("Bottleneck shortcut differs")
    hidden = wr.conv(n.cv1, w.cv1, m_in)
    return wr.conv(n.cv2, w.cv2, hidden, m_in if n.add else None)


def widen_c3k(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``C3k`` (a ``C3``): cv3 reads [m(cv1(x)), cv2(x)]."""
    a = wr.conv(n.cv1, w.cv1, m_in)
    for bn_, bw in zip(n.m, w.m, strict=True):
        a = widen_inner_block(wr, bn_, bw, a)
    b = wr.conv(n.cv2, w.cv2, m_in)
    return wr.conv(n.cv3, w.cv3, side_by_side(a, b))


def widen_inner_block(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """A block inside a C3k2 / C3k: a Bottleneck or a C3k."""
    from ultralytics.nn.modules.block import Bottleneck, C3k

    if type(n) is not type(w):
        raise WideningError(f"{type(n).__name__} vs {type(w).__name__}")
    if isinstance(n, C3k):
        return widen_c3k(wr, n, w, m_in)
    if isinstance(n, Bottleneck):
        return widen_bottleneck(wr, n, w, m_in)
    raise WideningError(f"{type(n).__name__} inside a C3k2: no widening rule")


def widen_c2f(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``C3k2`` / ``C2f``: cv1's output is chunked in two, each block reads the last piece, cv2 reads all."""
    half = spread(n.c, w.c)
    wr.conv(n.cv1, w.cv1, m_in, side_by_side(half, half))
    pieces = [half, half]
    for bn_, bw in zip(n.m, w.m, strict=True):
        pieces.append(widen_inner_block(wr, bn_, bw, pieces[-1]))
    return wr.conv(n.cv2, w.cv2, side_by_side(*pieces))


def widen_sppf(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``SPPF``: cv1, then max pools (per channel: the map carries over), cv2 reads all of them."""
    pooled = wr.conv(n.cv1, w.cv1, m_in)
    repeats = getattr(n, "n", 3) + 1
    return wr.conv(n.cv2, w.cv2, side_by_side(*[pooled] * repeats), m_in if getattr(n, "add", False) else None)


def widen_attention(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``Attention``: whole heads copied (the input map must be a :func:`head_map`); see the module
    docstring. Returns ``m_in`` (proj's output is added back onto its input in a PSABlock)."""
    hd, kd = n.head_dim, n.key_dim
    if (w.head_dim, w.key_dim) != (hd, kd) or w.scale != n.scale:
        raise WideningError(f"attention heads of {hd} channels (key {kd}) cannot be copied into heads of "
                            f"{w.head_dim} (key {w.key_dim}): ultralytics sizes heads from the width")
    expected = head_map(n.num_heads, w.num_heads, hd)
    if m_in.narrow != expected.narrow or not torch.equal(m_in.index, expected.index):
        raise WideningError("the attention's input is not mapped in whole heads")
    qkv = head_map(n.num_heads, w.num_heads, 2 * kd + hd)  # each head's rows: [q, k, v]
    wr.conv(n.qkv, w.qkv, m_in, qkv)
    wr.conv(n.pe, w.pe, m_in, m_in)  # depthwise over v, laid out as channels head by head
    return wr.conv(n.proj, w.proj, m_in, m_in)


def widen_psablock(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``PSABlock``: attention and a feed-forward pair, each added back onto its input (one map)."""
    widen_attention(wr, n.attn, w.attn, m_in)
    hidden = wr.conv(n.ffn[0], w.ffn[0], m_in)
    return wr.conv(n.ffn[1], w.ffn[1], hidden, m_in)


def widen_c2psa(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``C2PSA``: cv1's output split in a bypass half and an attention half (mapped in whole heads)."""
    heads = {(b.attn.num_heads, b.attn.head_dim) for b in n.m}, {(b.attn.num_heads, b.attn.head_dim) for b in w.m}
    if len(heads[0]) != 1 or len(heads[1]) != 1:
        raise WideningError("C2PSA blocks with differing heads")
    (nh, hd), (wh, whd) = heads[0].pop(), heads[1].pop()
    if whd != hd:
        raise WideningError(f"C2PSA: narrow heads of {hd} channels, wide ones of {whd}: a wide head cannot "
                            "be a copy of a narrow one (ultralytics: num_heads = max(c // 64, 1))")
    attn_map = head_map(nh, wh, hd)
    bypass = spread(n.c, w.c)
    wr.conv(n.cv1, w.cv1, m_in, side_by_side(bypass, attn_map))
    b = attn_map
    for bn_, bw in zip(n.m, w.m, strict=True):
        b = widen_psablock(wr, bn_, bw, b)
    return wr.conv(n.cv2, w.cv2, side_by_side(bypass, b))


def widen_conv_layer(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    return wr.conv(n, w, m_in)


def widen_passthrough(wr: Widener, n, w, m_in: ChannelMap) -> ChannelMap:
    """``nn.Upsample`` (nearest): every channel on its own, the map unchanged."""
    return m_in


def widen_concat(wr: Widener, n, w, maps: list[ChannelMap]) -> ChannelMap:
    if n.d != 1:
        raise WideningError(f"Concat along dimension {n.d}")
    return side_by_side(*maps)


def widen_branch(wr: Widener, n: nn.Sequential, w: nn.Sequential, m_in: ChannelMap) -> None:
    """One Detect branch: its Conv / DWConv layers (nested Sequentials flattened), then the output
    convolution, whose channels (box bins or classes) are kept."""
    from ultralytics.nn.modules.conv import Conv, DWConv

    layers_n = [m for m in n.modules() if isinstance(m, (Conv, nn.Conv2d)) and not _inside_conv(m, n)]
    layers_w = [m for m in w.modules() if isinstance(m, (Conv, nn.Conv2d)) and not _inside_conv(m, w)]
    if len(layers_n) != len(layers_w):
        raise WideningError("Detect branches differ in depth")
    m = m_in
    for ln, lw in zip(layers_n[:-1], layers_w[:-1], strict=True):
        m = wr.conv(ln, lw, m, m if isinstance(ln, DWConv) else None)
    wr.conv2d(layers_n[-1], layers_w[-1], m, identity(layers_n[-1].out_channels))


def _inside_conv(module: nn.Module, root: nn.Module) -> bool:
    """Whether ``module`` is the nn.Conv2d inside an ultralytics Conv (handled with its Conv)."""
    from ultralytics.nn.modules.conv import Conv

    return isinstance(module, nn.Conv2d) and any(isinstance(p, Conv) and p.conv is module for p in root.modules())


def widen_detect(wr: Widener, n, w, maps: list[ChannelMap]) -> None:
    """``Detect``: each level's box and class branches read that level's map; outputs keep their channels."""
    if (n.nc, n.reg_max, n.nl) != (w.nc, w.reg_max, w.nl):
        raise WideningError("Detect heads differ in classes, bins or levels")
    for name in ("cv2", "cv3", "one2one_cv2", "one2one_cv3"):
        bn_, bw = getattr(n, name, None), getattr(w, name, None)
        if (bn_ is None) != (bw is None):
            raise WideningError(f"Detect.{name} present in one network only")
        for level, m in zip(range(n.nl), maps, strict=True):
            if bn_ is not None:
                widen_branch(wr, bn_[level], bw[level], m)
    for (_, tn), (_, tw) in zip([*n.dfl.named_parameters(), *n.dfl.named_buffers()],
                                [*w.dfl.named_parameters(), *w.dfl.named_buffers()], strict=True):
        wr._set(tw, tn)  # the fixed 0..15 expectation of the box distribution


def layer_rules() -> dict[type, Callable]:
    from ultralytics.nn.modules import C2PSA, SPPF, C2f, Concat, Conv, Detect

    return {Conv: widen_conv_layer, C2f: widen_c2f, SPPF: widen_sppf, C2PSA: widen_c2psa,
            nn.Upsample: widen_passthrough, Concat: widen_concat, Detect: widen_detect}


def rule_for(module: nn.Module) -> Callable:
    for kind, rule in layer_rules().items():  # C3k2 is a C2f
        if isinstance(module, kind):
            return rule
    raise WideningError(f"{type(module).__name__}: no widening rule")


def widen_network(narrow, wide, noise: float = 0.0, seed: int = 0):
    """Fill ``wide`` (an ultralytics DetectionModel, e.g. a blank YOLO11s) from ``narrow`` (a trained
    YOLO11n of the same classes) so that it computes the same function (plus ``noise``); returns ``wide``."""
    if len(narrow.model) != len(wide.model):
        raise WideningError(f"{len(narrow.model)} layers vs {len(wide.model)}")
    wr = Widener(noise, seed)
    narrow, wide = narrow.float().eval(), wide.float().eval()
    maps: list[ChannelMap] = []
    with torch.no_grad():
        for i, (n, w) in enumerate(zip(narrow.model, wide.model, strict=True)):
            if type(n) is not type(w) or n.f != w.f:
                raise WideningError(f"layer {i}: {type(n).__name__} from {n.f} vs {type(w).__name__} from {w.f}")
            if isinstance(n.f, int):
                m_in = maps[n.f] if maps else identity(3)  # the RGB input is not widened
            else:
                m_in = [maps[j] for j in n.f]
            maps.append(rule_for(n)(wr, n, w, m_in))
    wr.check_complete(wide)
    wide.names = dict(narrow.names)
    return wide


def narrow_network(source: str | Path, work_dir: Path, arch: str = NARROW_ARCH,
                   calibration: list[Path] | None = None, imgsz: int = 640):
    """The trained narrow network of ``source`` (a ``.pt``, or an exported ``.onnx`` read back as
    ``carpose-train-det --init`` reads it, its BatchNorms calibrated on ``calibration`` if given)."""
    from ultralytics import YOLO

    from training.detector.warm_start import as_weights

    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"no detector at {source}")
    if calibration and source.suffix.lower() != ".onnx":
        raise ValueError("--calib applies to an ONNX source; a .pt keeps its own BatchNorm statistics")
    pt = as_weights(source, work_dir / "narrow.pt", arch, calibration, imgsz)
    return YOLO(str(pt), task="detect", verbose=False).model.float().eval()


def widen_detector(source: str | Path, out_pt: str | Path, arch: str = WIDE_ARCH, narrow_arch: str = NARROW_ARCH,
                   noise: float = 0.0, seed: int = 0, calibration: list[Path] | None = None,
                   imgsz: int = 640) -> tuple[Path, dict]:
    """Write ``out_pt``: ``source`` widened into ``arch``, an ultralytics checkpoint that the trainer and
    ``carpose-train-det --init`` take; returns it and the two networks' largest output difference on a
    grey-noise frame (a quick check; the test uses real frames)."""
    from training.detector.warm_start import blank_detector, save_detector

    with tempfile.TemporaryDirectory() as tmp:
        narrow = narrow_network(source, Path(tmp), narrow_arch, calibration, imgsz)
        wide = widen_network(narrow, blank_detector(arch, dict(narrow.names)), noise, seed)
        diff = max_raw_difference(narrow, wide)
        out = save_detector(wide, arch, out_pt)
    info = {"pt": str(out), "arch": arch, "from": str(source), "noise": noise,
            "parameters": {"narrow": sum(p.numel() for p in narrow.parameters()),
                           "wide": sum(p.numel() for p in wide.parameters())},
            "max_abs_raw_difference": diff}
    return out, info


def raw_outputs(net, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The Detect head's outputs: ``decoded`` (boxes in input pixels and class probabilities,
    B x (4 + nc) x anchors, what NMS reads) and the raw ``boxes`` (B x 4 * reg_max bins x anchors) and
    ``scores`` (class logits) before decoding."""
    with torch.no_grad():
        decoded, raw = net.float().eval()(x)
    return {"decoded": decoded, "boxes": raw["boxes"], "scores": raw["scores"]}


def max_raw_difference(a, b, hw: tuple[int, int] = SHIPPED_BOX, seed: int = 0) -> float:
    """Largest absolute difference of the decoded Detect outputs of two networks on a random frame."""
    x = torch.rand((1, 3, *hw), generator=torch.Generator().manual_seed(seed))
    return float((raw_outputs(a, x)["decoded"] - raw_outputs(b, x)["decoded"]).abs().max())


def export_like_shipped(pt: str | Path, out: str | Path, source: str | Path, info: dict,
                        box: tuple[int, int] = SHIPPED_BOX) -> Path:
    """``pt`` exported as the shipped detector is (one class, height and width free, frames fitted into
    ``box``), the source's provenance carried over (``carpose-benchmark`` flags frames it trained on)."""
    from carpose.detect import detector_provenance
    from training.detector.train import export_onnx

    provenance = detector_provenance(source) | {"widened": {k: info[k] for k in ("from", "arch", "noise")}}
    if "bn_calibrated" in info:  # where carpose-benchmark looks for BatchNorm statistics of validation frames
        provenance["bn_adapted"] = {"images": info["bn_calibrated"]}
    return export_onnx(pt, out, box, provenance, dynamic=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="carpose-det-widen", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="the narrow detector: an exported .onnx (models/carpose_det.onnx) or a .pt")
    p.add_argument("--out", required=True, help="the wide network's ultralytics checkpoint (.pt)")
    p.add_argument("--arch", default=WIDE_ARCH, help=f"the wide architecture (default {WIDE_ARCH})")
    p.add_argument("--from-arch", default=NARROW_ARCH, help=f"an ONNX source's architecture (default {NARROW_ARCH})")
    p.add_argument("--noise", type=float, default=0.0,
                   help="Gaussian noise, as a fraction of each weight tensor's std, that breaks the copies' "
                        "symmetry for fine-tuning (default 0: the same function)")
    p.add_argument("--seed", type=int, default=0, help="the noise's seed")
    p.add_argument("--calib", help="a folder of photos on which an ONNX source's BatchNorms are calibrated "
                                   "(recommended before training; warm_start.calibrate_batchnorms)")
    p.add_argument("--calib-count", type=int, default=64, help="how many of --calib's photos (spread evenly)")
    p.add_argument("--imgsz", type=int, default=640, help="the calibration's input size")
    p.add_argument("--export", help="also export the wide network to this ONNX path, as the shipped file is")
    p.add_argument("--box", type=int, nargs=2, default=SHIPPED_BOX, metavar=("H", "W"),
                   help="the export's box (default: the shipped 352 x 640)")
    args = p.parse_args(argv)
    try:
        calibration = None
        if args.calib:
            refuse_validation_frames(args.calib, "BatchNorm statistics")
            calibration = calibration_photos(args.calib, args.calib_count)
        pt, info = widen_detector(args.source, args.out, args.arch, args.from_arch, args.noise, args.seed,
                                  calibration, args.imgsz)
        if calibration:
            info["bn_calibrated"] = f"{len(calibration)} photos of {args.calib}"
        if args.export:
            info["onnx"] = str(export_like_shipped(pt, args.export, args.source, info, tuple(args.box)))
    except (FileNotFoundError, ValueError) as exc:  # WideningError too
        print(f"carpose-det-widen: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info))
    return 0


def calibration_photos(folder: str | Path, count: int) -> list[Path]:
    """``count`` photos of ``folder`` spread evenly over its sorted list (every source of a folder of
    sources represented)."""
    from training.detector.network_input import image_files

    files = image_files(folder)
    if not files:
        raise FileNotFoundError(f"no photos under {folder}")
    step = max(1, len(files) // count)
    return files[::step][:count]


if __name__ == "__main__":
    sys.exit(main())
