"""Pose CNN: soft labels and decoding, the flip rule, streaming data, a real (tiny) training run,
ONNX export parity, evaluation on HDF5 and KITTI folders, and clear errors on bad models/inputs.

The data here is real: crops rendered by the real renderer into a real HDF5 file; the model is
trained for real (a few steps) and exported to a real ONNX file run by ONNX Runtime.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from carpose.azimuth_head import decode, soft_labels
from carpose.convention import angular_error, flip_azimuth
from carpose.eval.kitti import parse_kitti_label
from carpose.eval.label_crops import kitti_crops
from carpose.pose import PoseEstimator, PoseModelError
from training.cars.procedural import generate_fleet
from training.pose.data import AugmentConfig, CropStream, augment, make_loader
from training.pose.evaluate import evaluate
from training.pose.export import export_onnx, parity_check
from training.pose.export import main as export_main
from training.pose.metrics import azimuth_metrics
from training.pose.train import main as train_main
from training.pose.train import parse_args, predict
from training.render.renderer import CarRenderer, Lighting, View

# --- soft labels and decoding --------------------------------------------------------------------

@pytest.mark.parametrize("az", [0.0, 0.4, 2.5, 17.3, 89.9, 180.0, 271.2, 357.5, 359.99])
def test_decode_of_encode_returns_the_angle(az):
    # Sub-bin precision: the circular mean around the arg-max recovers angles between bin centres.
    dec, conf = decode(soft_labels([az], 72, 7.5))
    assert angular_error(dec[0], az) < 0.5
    assert 0.9 < conf[0] <= 1.0


def test_soft_labels_wrap_around_zero():
    p = soft_labels([359.0], 72, 7.5)[0]
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    assert p[0] > p[1] > p[2] and p[0] > p[71] > p[70]  # peak between bins 71 and 0, nearer 0
    assert p[71] == pytest.approx(soft_labels([1.0], 72, 7.5)[0][1], rel=1e-5)  # symmetric about 0
    one_hot = soft_labels([359.0, 44.0, 46.0], 4, 0.0)
    assert one_hot.argmax(1).tolist() == [0, 0, 1]


def test_decode_picks_one_mode_of_a_split_distribution_and_is_unsure():
    # Half the mass at the front, half (slightly less) at the rear: a mean of all bins would say 90.
    p = np.zeros((1, 72))
    p[0, 0], p[0, 36] = 0.55, 0.45
    az, conf = decode(p)
    assert angular_error(az[0], 0.0) < 1e-6
    assert conf[0] < 0.2


def test_decode_rejects_bad_input():
    with pytest.raises(ValueError):
        decode(np.array([0.5, 0.5]))
    with pytest.raises(ValueError):
        decode(np.array([[np.nan, 1.0]]))


# --- flip rule -------------------------------------------------------------------------------------

def test_flip_augmentation_mirrors_image_and_label():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cfg = AugmentConfig(**{**AugmentConfig.none().__dict__, "flip_prob": 1.0})
    out, az = augment(img, 60.0, rng, cfg)
    assert np.array_equal(out, img[:, ::-1])
    assert az == pytest.approx(300.0)
    out, az = augment(img, 0.0, rng, cfg)
    assert az == pytest.approx(0.0)


def test_mirrored_render_matches_render_at_flipped_azimuth():
    # Cars are left-right symmetric, so the mirror image of a view at a *is* the view at 360 - a:
    # the physical reason the flip rule holds.
    car = generate_fleet(1, seed=3)[0]
    with CarRenderer(96, 96) as r:
        for a in (30.0, 110.0, 250.0):
            m1 = r.render_view(car, View(a, 10.0, 9.0), 96, Lighting()).mask
            m2 = r.render_view(car, View(float(flip_azimuth(a)), 10.0, 9.0), 96, Lighting()).mask
            iou = (m1[:, ::-1] & m2).sum() / (m1[:, ::-1] | m2).sum()
            assert iou > 0.95, f"azimuth {a}: mirrored silhouette IoU {iou:.3f}"
            # ...and a real check that it is not trivially symmetric: unflipped views differ.
            assert (m1 & m2).sum() / (m1 | m2).sum() < iou


# --- data streaming --------------------------------------------------------------------------------

def test_stream_reads_every_row_once_and_shuffles_in_training(pose_crops):
    val = CropStream([pose_crops], train=False)
    labels = np.concatenate([az.numpy() for _, az in make_loader(val, 16, 0)])
    from training.dataset.reader import CarposeDataset

    with CarposeDataset(pose_crops) as ds:
        truth = ds.h5["azimuth_deg"][:]
    assert np.allclose(labels, truth)  # eval order is file order, every row once
    tr = CropStream([pose_crops], train=True, aug=AugmentConfig.none(), seed=1)
    a = np.concatenate([az.numpy() for _, az in make_loader(tr, 16, 2)])
    tr.set_epoch(1)
    b = np.concatenate([az.numpy() for _, az in make_loader(tr, 16, 2)])
    assert len(a) == len(b) == (len(truth) // 16) * 16  # drop_last in training
    assert not np.allclose(a, b)  # a new order each epoch
    assert np.allclose(np.sort(a), np.sort(truth)[: len(a)]) or set(np.round(a, 3)) <= set(np.round(truth, 3))


def test_stream_refuses_scenes_and_mixed_sizes(tmp_path, pose_crops, pose_scenes):
    from training.dataset.reader import DatasetError

    with pytest.raises(DatasetError, match="scenes"):
        CropStream([pose_scenes], train=True)
    with pytest.raises(FileNotFoundError):
        CropStream([tmp_path / "nope.h5"], train=True)


# --- training, export, evaluation ------------------------------------------------------------------

def test_training_lowers_the_loss_and_writes_a_run(pose_run, pose_crops):
    hist = json.loads((pose_run / "history.json").read_text())["history"]
    assert len(hist) == 3
    assert hist[-1]["train_loss"] < hist[0]["train_loss"] - 0.05
    for f in ("best.pt", "last.pt", "curves.png", "eval.json", "val_polar.png", "val_quadrants.png",
              "val_calibration.png"):
        assert (pose_run / f).stat().st_size > 0, f
    ev = json.loads((pose_run / "eval.json").read_text())
    assert ev["sets"]["val"]["n"] == 96  # the full file, not the per-epoch subset


def test_resume_continues_from_last_checkpoint(pose_run, pose_crops):
    args = ["--train", str(pose_crops), "--out", str(pose_run), "--epochs", "4", "--batch", "32",
            "--workers", "0", "--limit", "64", "--quiet", "--resume", "--val", str(pose_crops), "--val-limit", "64"]
    before = torch.load(pose_run / "last.pt", weights_only=True)["state_dict"]["head.weight"]
    assert train_main(args) == 0
    hist = json.loads((pose_run / "history.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    # the resumed epoch trains the loaded weights (it once stepped an optimiser bound to a discarded copy)
    assert not torch.equal(before, torch.load(pose_run / "last.pt", weights_only=True)["state_dict"]["head.weight"])


def test_onnx_export_has_metadata_and_matches_torch(pose_run, pose_crops, tmp_path):
    out = export_onnx(pose_run / "best.pt", tmp_path / "m.onnx")
    m = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in m.metadata_props}["carpose"])
    assert meta["input_size"] == 64 and meta["bins"] == 72 and meta["convention_version"] == 1
    assert m.opset_import[0].version >= 17
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"  # dynamic batch
    from training.dataset.reader import CarposeDataset

    with CarposeDataset(pose_crops) as ds:
        crops = ds.h5["images"][:40]
    par = parity_check(pose_run / "best.pt", out, crops)
    assert par["max_abs_prob_diff"] < 1e-4
    assert par["max_angle_diff_deg"] < 0.01
    # batch sizes 1 and 40 give the same answers (the dynamic axis works)
    est = PoseEstimator(out)
    one = est.predict(crops[:1])
    assert angular_error(one.azimuth_deg[0], est.predict(crops).azimuth_deg[0]) < 1e-3


def test_export_cli_writes_only_after_parity(pose_run, pose_crops, tmp_path):
    out = tmp_path / "cli.onnx"
    assert export_main([str(pose_run / "best.pt"), "--out", str(out), "--parity", str(pose_crops)]) == 0
    assert out.exists() and not list(tmp_path.glob("*.staged.onnx"))
    assert export_main([str(tmp_path / "missing.pt"), "--out", str(tmp_path / "x.onnx")]) == 2
    assert not (tmp_path / "x.onnx").exists()


def test_eval_on_hdf5_uses_the_same_numbers_for_torch_and_onnx(pose_run, pose_crops, tmp_path):
    onnx_path = export_onnx(pose_run / "best.pt", tmp_path / "m.onnx")
    a = evaluate(pose_run / "best.pt", pose_crops, progress=False)
    b = evaluate(onnx_path, pose_crops, progress=False)
    assert a["metrics"]["n"] == b["metrics"]["n"] == 96
    assert np.max(angular_error(a["pred"], b["pred"])) < 0.01
    # and the train-time scorer agrees with the runtime path
    from training.pose.checkpoint import load_checkpoint

    model, ck = load_checkpoint(pose_run / "best.pt")
    r = predict(model, make_loader(CropStream([pose_crops], train=False), 32, 0), torch.device("cpu"),
                3, 72, 7.5)
    assert np.max(angular_error(r["pred"], a["pred"])) < 0.01


def test_kitti_labels_from_rendered_scenes_give_the_rendered_azimuths(pose_scenes, pose_run, tmp_path):
    from training.dataset.export import export_kitti
    from training.dataset.reader import CarposeDataset

    export_kitti(pose_scenes, tmp_path / "kitti")
    est = PoseEstimator(pose_run / "best.pt")
    kc = kitti_crops(tmp_path / "kitti", est.crop_spec, min_height=0, max_truncation=1.0, max_occlusion=3,
                     progress=False)
    crops, az = kc.crops, kc.azimuth_deg
    assert kc.sure.all() and len(kc.refs) == len(az)  # exported labels have 15 fields: sure
    with CarposeDataset(pose_scenes) as ds:
        truth = ds.labels()["azimuth_deg"]
    assert len(az) == len(truth) and crops.shape[1:] == (64, 64, 3)
    # alpha written by the exporter, read back through the convention: the rendered azimuths
    assert np.max(angular_error(np.sort(az), np.sort(truth))) < 0.01 or \
        np.max(angular_error(az, truth)) < 0.01


def test_true_box_crops_of_a_grey_nearer_model_grey_the_nearer_labelled_cars(tmp_path):
    """The benchmark's and training's real crops (``kitti_crops``) grey, for a ``grey_nearer`` spec, the
    nearer overlapping boxes of every labelled object of the scored types, even one too small or too
    occluded to be scored itself; other types (a pedestrian) stay as they are."""
    import cv2

    from carpose.crop import CropSpec

    (tmp_path / "image_2").mkdir()
    (tmp_path / "label_2").mkdir()
    img = np.random.default_rng(0).integers(0, 255, (200, 300, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "image_2" / "000000.png"), img)
    (tmp_path / "label_2" / "000000.txt").write_text(
        "Car 0.00 0 -1.57 100 60 160 100 1.5 1.6 4.0 0.0 1.6 20.0 -1.57\n"      # behind
        "Van 0.00 3 1.57 140 70 220 130 1.5 1.6 4.0 1.0 1.6 15.0 1.57\n"        # nearer, too occluded to score
        "Pedestrian 0.00 0 0.0 95 55 115 110 1.7 0.5 0.5 -1.0 1.6 18.0 0.0\n")  # nearer, not a car
    kw = dict(types=("Car", "Van"), min_height=0, max_truncation=1.0, max_occlusion=2, progress=False)
    plain = kitti_crops(tmp_path, CropSpec(size=64, context=0.0), **kw)
    grey = kitti_crops(tmp_path, CropSpec(size=64, context=0.0, occluders="grey_nearer"), **kw)
    assert len(plain) == len(grey) == 1 and plain.skipped["occluded"] == 1
    changed = np.any(grey.crops[0] != plain.crops[0], axis=2)
    assert changed[:, :8].sum() == 0  # the pedestrian's corner of the crop is untouched
    assert changed[20:, 48:].mean() > 0.9 and changed[:8].sum() == 0  # the van's box, from its top edge


def test_kitti_label_parser_hand_made(tmp_path):
    f = tmp_path / "000000.txt"
    f.write_text("Car 0.00 0 1.5707963 100 120 300 220 1.5 1.6 4.0 1.0 1.6 20.0 1.62\n"
                 "DontCare -1 -1 -10 0 0 10 10 -1 -1 -1 -1000 -1000 -1000 -10\n"
                 "Car 0.50 2 -1.5707963 10 20 30 40 1.5 1.6 4.0 -3.0 1.6 30.0 -1.67\n")
    objs = parse_kitti_label(f)
    assert [o.type for o in objs] == ["Car", "DontCare", "Car"]
    assert angular_error(objs[0].azimuth_deg, 0.0) < 1e-4  # alpha +pi/2: facing the camera
    assert angular_error(objs[2].azimuth_deg, 180.0) < 1e-4  # alpha -pi/2: seen from behind
    assert objs[2].occluded == 2 and np.allclose(objs[0].box_xyxy, [100, 120, 300, 220])
    f.write_text("Car 0 0 0.1 1 2 3\n")
    with pytest.raises(ValueError, match="15"):
        parse_kitti_label(f)


# --- metrics ---------------------------------------------------------------------------------------

def test_metrics_on_hand_made_cases():
    true = np.array([0.0, 90.0, 180.0, 270.0, 350.0])
    pred = np.array([10.0, 90.0, 0.0, 250.0, 5.0])  # errors 10, 0, 180, 20, 15
    m = azimuth_metrics(pred, true, confidence=np.array([0.9, 1.0, 0.1, 0.6, 0.8]))
    assert m["med_err_deg"] == pytest.approx(15.0)
    assert m["acc_30"] == pytest.approx(0.8) and m["acc_15"] == pytest.approx(0.6)
    assert m["quadrant_acc"] == pytest.approx(0.8)  # only 180 -> 0 changes quadrant
    assert m["flip_rate"] == pytest.approx(0.2)
    assert np.array(m["quadrant_confusion"])[2, 0] == 1
    assert m["conf_err_spearman"] < 0  # higher confidence, lower error


# --- clear errors -------------------------------------------------------------------------------------

def test_bad_models_and_inputs_give_clear_errors(pose_run, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PoseEstimator(tmp_path / "missing.onnx")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((pose_run / "best.pt").read_bytes()[:5000])
    with pytest.raises(PoseModelError, match="corrupt"):
        PoseEstimator(corrupt)
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"not an onnx file")
    with pytest.raises(PoseModelError):
        PoseEstimator(bad_onnx)
    # an ONNX model from somewhere else (no carpose metadata)
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 1, 1), (torch.zeros(1, 3, 8, 8),), str(plain), dynamo=False)
    with pytest.raises(PoseModelError, match="metadata"):
        PoseEstimator(plain)
    # a model trained under another azimuth convention
    onnx_path = export_onnx(pose_run / "best.pt", tmp_path / "m.onnx")
    m = onnx.load(str(onnx_path))
    meta = json.loads(m.metadata_props[0].value)
    m.metadata_props[0].value = json.dumps(dict(meta, convention_version=99))
    onnx.save(m, str(tmp_path / "other.onnx"))
    with pytest.raises(PoseModelError, match="convention"):
        PoseEstimator(tmp_path / "other.onnx")
    est = PoseEstimator(onnx_path)
    with pytest.raises(ValueError, match="64, 64, 3"):
        est.predict(np.zeros((2, 128, 128, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        est.predict(np.zeros((2, 64, 64, 3), np.float32))
    assert est.predict(np.zeros((0, 64, 64, 3), np.uint8)).azimuth_deg.shape == (0,)


def test_train_cli_errors_and_quick_profile(tmp_path, pose_scenes):
    assert parse_args(["--train", "x.h5", "--out", "o", "--quick"]).epochs == 6
    assert train_main(["--train", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "o")]) == 2
    assert train_main(["--train", str(pose_scenes), "--out", str(tmp_path / "o")]) == 2


def test_an_ensemble_exports_as_one_onnx_that_averages_its_members(pose_run, pose_crops, tmp_path):
    """Issue 21: several members (checkpoints or pose ONNX files) become one ONNX whose probabilities
    are the mean of theirs; members that cut crops differently are refused and nothing is written."""
    from training.dataset.reader import CarposeDataset
    from training.pose.checkpoint import load_checkpoint, save_checkpoint

    member_onnx = export_onnx(pose_run / "last.pt", tmp_path / "last.onnx")
    # a second, different member: the last epoch's weights nudged, so the mean is not either member
    model, ck = load_checkpoint(pose_run / "last.pt")
    with torch.no_grad():
        model.head.bias.add_(torch.linspace(-1, 1, model.head.bias.numel()))
    other = save_checkpoint(tmp_path / "other.pt", model, ck["metadata"])
    out = tmp_path / "ens.onnx"
    assert export_main([str(member_onnx), str(other), "--out", str(out), "--parity", str(pose_crops),
                        "--mirror-tta"]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["carpose"])
    assert [m["file"] for m in meta["ensemble"]] == [str(member_onnx), str(other)] and meta["mirror_tta"]
    with CarposeDataset(pose_crops) as ds:
        crops = ds.h5["images"][:24]
    a = PoseEstimator(member_onnx, mirror_tta=False).predict(crops).probs
    b = PoseEstimator(other, backend="torch", device="cpu", mirror_tta=False).predict(crops).probs
    e = PoseEstimator(out, mirror_tta=False).predict(crops).probs
    assert np.abs(a - b).max() > 1e-3  # two different members
    assert np.abs(e - (a + b) / 2).max() < 1e-4 and np.allclose(e.sum(1), 1, atol=1e-4)
    assert PoseEstimator(out).mirror_tta  # the runtime follows the ensemble's metadata

    ck["metadata"] = dict(ck["metadata"], crop=dict(ck["metadata"]["crop"], context=0.3))
    wide = save_checkpoint(tmp_path / "wide.pt", model, ck["metadata"])
    assert export_main([str(other), str(wide), "--out", str(tmp_path / "bad.onnx")]) == 2
    assert not (tmp_path / "bad.onnx").exists() and not list(tmp_path.glob("*.staged.onnx"))


def test_a_soup_exports_one_network_with_the_weighted_mean_of_its_members_weights(pose_run, pose_crops, tmp_path):
    """Issue 21: ``--soup`` averages the members' weights with their BatchNorms folded, so that a
    checkpoint and an ONNX export of one lineage mix: a checkpoint souped with its own export is the same
    network, and members that differ in the head's bias give the network with the weighted mean bias
    (not the ensemble's mean of probabilities). Bad member lists and weights are refused, nothing written."""
    from training.dataset.reader import CarposeDataset
    from training.pose.checkpoint import load_checkpoint, save_checkpoint

    last = pose_run / "last.pt"
    member_onnx = export_onnx(last, tmp_path / "last.onnx")
    model, ck = load_checkpoint(last)
    shift = torch.linspace(-2, 2, model.head.bias.numel())
    with torch.no_grad():
        model.head.bias.add_(shift)
        other = save_checkpoint(tmp_path / "other.pt", model, ck["metadata"])
        model.head.bias.sub_(0.75 * shift)  # 0.75 x last + 0.25 x other
        mid = save_checkpoint(tmp_path / "mid.pt", model, ck["metadata"])
    with CarposeDataset(pose_crops) as ds:
        crops = ds.h5["images"][:24]

    def probs(path, backend="auto"):
        return PoseEstimator(path, backend=backend, device="cpu", mirror_tta=False).predict(crops).probs

    soup = tmp_path / "soup.onnx"
    assert export_main([str(last), str(other), "--soup", "3", "1", "--out", str(soup),
                        "--parity", str(pose_crops)]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(str(soup)).metadata_props}["carpose"])
    assert [(m["file"], m["weight"]) for m in meta["soup"]] == [(str(last), 0.75), (str(other), 0.25)]
    assert np.abs(probs(soup) - probs(mid, "torch")).max() < 1e-4
    ens = tmp_path / "ens.onnx"
    assert export_main([str(last), str(other), "--out", str(ens)]) == 0
    assert np.abs(probs(ens) - probs(soup)).max() > 1e-3  # a soup is not an ensemble

    same = tmp_path / "same.onnx"  # trained BatchNorm statistics (the checkpoint) against folded ones
    assert export_main([str(last), str(member_onnx), "--soup", "--out", str(same)]) == 0
    assert np.abs(probs(same) - probs(member_onnx)).max() < 1e-4

    bad = tmp_path / "bad.onnx"
    for argv in ([str(last), "--soup"], [str(last), str(other), "--soup", "1"],
                 [str(last), str(other), "--soup", "1", "-1"]):
        assert export_main([*argv, "--out", str(bad)]) == 2
    assert not bad.exists() and not list(tmp_path.glob("*.staged.onnx"))
