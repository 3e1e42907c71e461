#!/usr/bin/env bash
# The shipped car detector's recipe (models/README.md, "Car detector"): self-training on unlabelled
# real photos plus road scenes rendered over them (issue 22).
#
# 1. Pseudo-labels (scripts/pseudo_label_road.sh, training/detector/pseudo_label.py): the previous
#    shipped detector (the teacher),
#    run at 960 px with ultralytics' test-time augmentation (3 scales, a flip), labels the cars of the
#    511 unlabelled real road photos of ../shared/real_unlabelled without openalpr (8 sources:
#    CamVid, BDD100K, TuSimple, Cityscapes, dash cams...; openalpr's close-ups of car ends are left out
#    because the teacher boxes parts of those cars, not the cars: looked at in its sheet.jpg). Boxes
#    scoring >= 0.55 become labels, 0.25-0.55 are painted grey (neither car nor background for the
#    student; 9 % of the pixels), and so is the camera's own car (dashcam_cpd's wing mirror: a box at
#    the frame's edge in a quarter of that source's photos; 33 sure boxes). Thresholds chosen on the
#    teacher's precision and recall on both validation sources (`carpose-pseudo-label --score`); the
#    labels never see a validation frame.
# 2. Road scenes (training/render/scenes.py, layout "road"): kerb rows, parking lots and lane traffic
#    in a road camera's perspective, realistic look, up to 4 unlabelled negatives a scene (lorries,
#    trailers, buses, box vans, poles, bollards, barriers, fences, trees; ../shared/distractors), on
#    whole real road photos (real_unlabelled without openalpr's close-ups of car ends, 85 %) whose
#    real cars are inpainted away using the teacher's boxes (step 1's label_2, every box >= 0.25), or
#    procedural backgrounds. COUNT 16:9 scenes (hfov 55-75 deg) and COUNT2 wide ones (1024 x 320,
#    hfov 70-90 deg, a KITTI-like camera).
# 3. YOLO11n, ultralytics' trainer (mosaic, HSV, scale, flips), 512 px, EPOCHS epochs from the previous
#    shipped detector (INIT, taken from git), on the scenes plus the pseudo-labelled photos (listed
#    twice, so about a third of the images are real); every
#    epoch is scored on both real validation sources (carpose-train-det --real: mean AP@0.5 over
#    sources) and the chosen one is exported to ONNX at 288 x 512, its provenance in the metadata.
#    This round-1 detector (shipped at dd873b2) goes to $OUT/det_round1.onnx; `git show
#    dd873b2:models/carpose_det.onnx > data/det/det_round1.onnx` skips its training.
# 4. A second teacher: the round-1 detector trained 3 gentle epochs more (AdamW lr 0.0005) on the same
#    scenes plus 500 old-look ones (--studio: flat paint, studio lights, no shadows, 30 % procedural
#    backgrounds) and the same pseudo-labelled photos. Alone it is not shippable (it trades nuScenes
#    for KITTI); as a teacher at 960 px with TTA it finds KITTI cars the a45a3c5 teacher misses.
# 5. Round 2 (shipped): the a45a3c5 detector and step 4's, fused into one teacher
#    (carpose-pseudo-label --teacher A --teacher B: weighted box fusion, a box scoring the mean of the
#    two detectors' scores), label the same photos again at keep 0.5 / ignore 0.2 (chosen on the
#    teacher's precision and recall on both validation sources: KITTI 0.81 / 0.47 at keep, against
#    the round-1 teacher's 0.55 / 0.37); the student starts from the round-1 detector and trains as in
#    step 3 on the same road scenes plus these labels (listed twice); the epoch with the best mean AP
#    over both sources is exported. Alone it trades nuScenes for KITTI (AP 0.654 / 0.452).
# 6. The round-2 detector (shipped at 1bd8c04; not built any more, step 8 soups its members): the mean of the
#    round-1 detector's and step 5's weights (carpose-det-soup,
#    both exported ONNX, so BatchNorms folded into the convolutions), its class scores shifted so that
#    the default threshold 0.35 cuts where the soup's own 0.5 did (AP unchanged; the soup's scores run
#    higher than its members': at 0.35 it kept more boxes at lower precision). 0.5 is the lowest of
#    0.45 / 0.475 / 0.5 at which nuScenes precision meets the issue's 0.85 (0.896; KITTI 0.789). Half
#    and half was the first weighting tried and the best of 0.3 / 0.5 / 0.7 on the mean AP over sources.
# 7. Side views, border-cut cars and vans (issue 22, round 3): 700 road scenes and 400 wide ones with a cross
#    street in 90 % of them at 6-35 m and placed before the kerb rows (27 % of the cars side-on against 8 %),
#    a parking lot in 60 %, car centres up to 15 deg outside the field of view (cut by the border), and no
#    windowless box van among the negatives (KITTI labels it a Van: a car to the product; the old negative
#    taught that a tall boxy car is not one). The round-1 detector trains as in step 5 on the old and new scenes
#    plus the fused labels listed three times (a third of the images stay real); the best epoch by mean AP.
# 8. The round-3 detector (shipped at 5e9816c): the weighted mean of round 1 (0.25), step 5's student (0.25) and step 7's (0.5),
#    operated at 0.5 (the lowest of 0.45 / 0.5 / 0.55 at which nuScenes precision meets 0.85). The weights were
#    chosen on the mean AP over sources among 0.5 / 0.5 soups of pairs, a third each, 0.4 / 0.6 and this one
#    (models/README.md, "round 3").
# 9. A 352 x 640 input (issue 22, round 4): the step-8 soup trained 3 gentle epochs more (AdamW lr 0.0005) at 640 px
#    on the same scenes and labels as step 7, the best epoch by mean AP exported at 352 x 640 (the input the shipped
#    network runs at: 1.2-1.35x the time of 288 x 512; KITTI's wide frames letterbox at scale 0.52 instead of 0.41).
# 10. The round-4 detector (shipped from 18991a2 to round 9): the step-8 soup 0.3 and step 9's student 0.7, exported
#    for a 352 x 640 box with a free height and width (each frame fitted into the box, padded only to a multiple of
#    32) and operated at 0.5 (the lowest of 0.45 / 0.5 / 0.55 at which precision meets 0.85 on both sources);
#    0.3 / 0.7 beat 0.5 / 0.5 on the mean AP over sources (models/README.md, "round 4").
# 11. The INT8 twin for CPUs (opt-in: det_int8:=true) of the shipped file: backbone and neck convolutions int8,
#    calibrated on 256 unlabelled real photos, the head, stem, SPPF and C2PSA float, scores matched to the float
#    file's operating point on those photos (models/README.md, "INT8"); 1 min.
# 12. The shipped detector (issue 22, round 9): the round-4 detector labels the real photos again (keep 0.5, ignore
#    0.2: `pseudo_g`), 800 road scenes of round 6's emphasis (cross streets, parking lots, border cars) are rendered
#    with every car's amodal box (its whole silhouette, cut by the frame: how KITTI boxes a hidden car), a student
#    trains 3 gentle epochs (AdamW 0.0003) from the round-4 weights at 640 px on those boxes and labels, the best
#    epoch by mean AP over sources is exported, and the round-4 weights and it are averaged half and half (no score
#    shift: at 0.35 precision meets 0.85 on both sources). 0.5 / 0.5 beat 0.7 / 0.3, 0.3 / 0.7 and the other
#    epochs on the mean AP over sources (models/README.md, "round 9"). Shipped from 10b232a to round 11.
# 13. The shipped detector (issue 22, round 11): the round-9 detector labels the photos again at 960 px, every box
#    >= 0.05 (`pseudo_k`); those boxes were judged by eye (data/verified/pseudo_k, round 10) and the verdicts make
#    the labels (`pseudo_v`: cars label, loose / unsure grey, not-cars background). Twice step 12's scenes (its
#    two files again and two more of new seeds) are rendered over photos whose real cars are inpainted by the
#    union of step 1's labels and `pseudo_v`'s (a car one list missed would stay in a background as an
#    unlabelled car); a student trains as in step 12 with `pseudo_v` listed three times, its best epoch by mean AP
#    over sources (the last) is exported alone, its scores shifted so that 0.35 cuts where 0.5 did (where
#    KITTI's precision passes 0.85) (models/README.md, "round 11").
# Steps 4 and 9 were trained before 2026-12-06's mend of the warm-up (carpose-train-det --lr0 now starts the
# biases' warm-up at 0; ultralytics' 0.1 moved every bias by up to 0.1 a step under AdamW): they pass
# --warmup-bias-lr 0.1 to reproduce the files as shipped.
# Validation frames are never backgrounds nor pseudo-labelled (both refused by the tools).
# Measured on 2 cores: 2.4 min of pseudo-labelling, 19 min of rendering, 34 min of training (step 3);
# step 4: 2 min of rendering, 42 min of training; step 5: 6 min of pseudo-labelling, 55 min of training;
# step 7: 7 min of rendering, 78 min of training (271 batches an epoch); step 8: 1 min; step 9: 103 min of
# training (7.3 s a batch at 640 px); step 10: 1 min; step 12: 2 min of pseudo-labelling, 5 min of rendering,
# 16 min of training (4.4 s a batch), 1 min of soup; step 13: 2 min of pseudo-labelling, 12 min of rendering,
# 39 min of training (186 batches an epoch).
# Resume an interrupted training: carpose-train-det ... --out "$RUNS..." --resume
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
OUT=${OUT:-data/det}
RUNS=${RUNS:-runs/det_pseudo}
SHARED=${CARPOSE_SHARED:-../shared}
mkdir -p "$OUT"
INIT=${INIT:-$OUT/init_det.onnx}
PSEUDO=${PSEUDO:-$OUT/pseudo}
OUT="$OUT" INIT="$INIT" PSEUDO="$PSEUDO" bash scripts/pseudo_label_road.sh  # step 1
models=()
for d in "$SHARED/cars" "$SHARED/cars_more"; do [ -d "$d" ] && models+=(--models "$d"); done
negs=()
[ -d "$SHARED/distractors" ] && negs=(--negative-models "$SHARED/distractors")
scenes() {  # scenes OUT COUNT SEED WIDTH HEIGHT HFOV_MIN HFOV_MAX [more carpose-render scenes options]
  [ -f "$1" ] || carpose-render scenes --out "$1" --count "$2" --seed "$3" --layout road --negatives 4 "${negs[@]}" \
    "${models[@]}" --procedural 60 --max-cars 14 --width "$4" --height "$5" --hfov "$6" "$7" \
    --backgrounds "$OUT/bg_road" --background-labels "$PSEUDO/label_2" --procedural-backgrounds 0.15 \
    --workers "${WORKERS:-2}" --block-size 50 --quiet "${@:8}"  # a later --procedural-backgrounds wins
}
scenes "$OUT/road3.h5" "${COUNT:-1500}" 50 640 360 55 75
scenes "$OUT/wide3.h5" "${COUNT2:-500}" 51 1024 320 70 90
ROUND1=$OUT/det_round1.onnx
[ -f "$ROUND1" ] || carpose-train-det "$OUT/road3.h5" "$OUT/wide3.h5" --pseudo "$PSEUDO" --pseudo "$PSEUDO" \
  --out "$RUNS" --imgsz 512 --batch 16 --epochs "${EPOCHS:-4}" --init "$INIT" --real --export-hw 288 512 \
  --export "$ROUND1"  # step 3
scenes "$OUT/studio3.h5" 500 52 640 360 55 75 --studio --procedural-backgrounds 0.3  # step 4
TEACHER2=$OUT/det_r1s.onnx
[ -f "$TEACHER2" ] || carpose-train-det "$OUT/road3.h5" "$OUT/wide3.h5" "$OUT/studio3.h5" --pseudo "$PSEUDO" \
  --pseudo "$PSEUDO" --out "${RUNS}_r1s" --imgsz 512 --batch 16 --epochs 3 --lr0 0.0005 --warmup-bias-lr 0.1 \
  --init "$ROUND1" --real \
  --export-hw 288 512 --export "$TEACHER2"
FUSED=$OUT/pseudo_f  # step 5
[ -f "$FUSED/pseudo.json" ] || carpose-pseudo-label "$OUT/bg_road" --teacher "$INIT" --teacher "$TEACHER2" \
  --out "$FUSED" --imgsz 960 --keep 0.5 --ignore 0.2 --quiet
STUDENT=$OUT/det_fused.onnx
[ -f "$STUDENT" ] || carpose-train-det "$OUT/road3.h5" "$OUT/wide3.h5" --pseudo "$FUSED" --pseudo "$FUSED" \
  --out "${RUNS}_fused" --imgsz 512 --batch 16 --epochs "${EPOCHS:-4}" --init "$ROUND1" --real \
  --export-hw 288 512 --export "$STUDENT"
SIDE=(--skip-negative box_van --cross-street 0.9 --cross-street-m 6 35 --parking-lot 0.6 --edge-margin 15 --side-first)
scenes "$OUT/road4.h5" 700 60 640 360 55 75 "${SIDE[@]}"  # step 7
scenes "$OUT/wide4.h5" 400 61 1024 320 70 90 "${SIDE[@]}"
SIDE_STUDENT=$OUT/det_side.onnx
[ -f "$SIDE_STUDENT" ] || carpose-train-det "$OUT/road3.h5" "$OUT/wide3.h5" "$OUT/road4.h5" "$OUT/wide4.h5" \
  --pseudo "$FUSED" --pseudo "$FUSED" --pseudo "$FUSED" --out "${RUNS}_side" --imgsz 512 --batch 16 \
  --epochs "${EPOCHS:-4}" --init "$ROUND1" --real --export-hw 288 512 --export "$SIDE_STUDENT"
ROUND3=$OUT/det_round3.onnx  # step 8 (shipped at 5e9816c)
[ -f "$ROUND3" ] || carpose-det-soup "$ROUND1" "$STUDENT" "$SIDE_STUDENT" --weights 0.25 0.25 0.5 --operate-at 0.525 \
  --export-hw 288 512 --out "$ROUND3"
WIDE_STUDENT=$OUT/det_640.onnx  # step 9
[ -f "$WIDE_STUDENT" ] || carpose-train-det "$OUT/road3.h5" "$OUT/wide3.h5" "$OUT/road4.h5" "$OUT/wide4.h5" \
  --pseudo "$FUSED" --pseudo "$FUSED" --pseudo "$FUSED" --out "${RUNS}_640" --imgsz 640 --batch 16 --epochs 3 \
  --lr0 0.0005 --warmup-bias-lr 0.1 --init "$ROUND3" --real --export-hw 352 640 --export "$WIDE_STUDENT"
ROUND4=$OUT/det_round4.onnx  # step 10 (shipped at 18991a2 with a fixed input; the dynamic one from round 4b)
[ -f "$ROUND4" ] || carpose-det-soup "$ROUND3" "$WIDE_STUDENT" --weights 0.3 0.7 --operate-at 0.5 --export-hw 352 640 \
  --dynamic --out "$ROUND4"
ROUND4_FIXED=$OUT/det_round4_fixed.onnx  # the same weights at a fixed 352 x 640: the warm start of step 12
[ -f "$ROUND4_FIXED" ] || carpose-det-soup "$ROUND3" "$WIDE_STUDENT" --weights 0.3 0.7 --operate-at 0.5 \
  --export-hw 352 640 --out "$ROUND4_FIXED"
PSEUDO_G=$OUT/pseudo_g  # step 12: labels from the round-4 detector
[ -f "$PSEUDO_G/pseudo.json" ] || carpose-pseudo-label "$OUT/bg_road" --teacher "$ROUND4" --imgsz 960 --keep 0.5 \
  --ignore 0.2 --out "$PSEUDO_G" --quiet
SIDE5=(--cross-street 0.9 --cross-street-m 4 60 --parking-lot 0.8 --edge-margin 25 --side-first --skip-negative box_van)
scenes "$OUT/road7a.h5" 500 72 640 360 55 75 "${SIDE5[@]}"
scenes "$OUT/wide7a.h5" 300 73 1024 320 70 90 "${SIDE5[@]}"
AMODAL_STUDENT=$OUT/det_amodal.onnx
[ -f "$AMODAL_STUDENT" ] || carpose-train-det "$OUT/road7a.h5" "$OUT/wide7a.h5" --pseudo "$PSEUDO_G" \
  --out "${RUNS}_amodal" --imgsz 640 --batch 16 --epochs 3 --lr0 0.0003 --init "$ROUND4_FIXED" --real \
  --export-hw 352 640 --dynamic --boxes amodal --export "$AMODAL_STUDENT"
ROUND9=$OUT/det_round9.onnx  # step 12 (shipped from 10b232a to round 11)
[ -f "$ROUND9" ] || carpose-det-soup "$ROUND4_FIXED" "$AMODAL_STUDENT" --weights 0.5 0.5 --export-hw 352 640 \
  --dynamic --out "$ROUND9"
PSEUDO_K=$OUT/pseudo_k  # step 13: the boxes judged in data/verified/pseudo_k
[ -f "$PSEUDO_K/pseudo.json" ] || carpose-pseudo-label "$OUT/bg_road" --teacher "$ROUND9" --imgsz 960 --keep 0.5 \
  --ignore 0.05 --out "$PSEUDO_K" --quiet
PSEUDO_V=$OUT/pseudo_v
[ -f "$PSEUDO_V/pseudo.json" ] || carpose-verify-labels apply "$PSEUDO_K" --verdicts data/verified/pseudo_k \
  --out "$PSEUDO_V"
CLEAN=(--background-labels "$PSEUDO/label_2" "$PSEUDO_V/label_2")  # the later option wins over scenes()'s
scenes "$OUT/road7u.h5" 500 72 640 360 55 75 "${SIDE5[@]}" "${CLEAN[@]}"
scenes "$OUT/wide7u.h5" 300 73 1024 320 70 90 "${SIDE5[@]}" "${CLEAN[@]}"
scenes "$OUT/road9u.h5" 500 82 640 360 55 75 "${SIDE5[@]}" "${CLEAN[@]}"
scenes "$OUT/wide9u.h5" 300 83 1024 320 70 90 "${SIDE5[@]}" "${CLEAN[@]}"
CLEAN_STUDENT=$OUT/det_clean.onnx
[ -f "$CLEAN_STUDENT" ] || carpose-train-det "$OUT/road7u.h5" "$OUT/wide7u.h5" "$OUT/road9u.h5" "$OUT/wide9u.h5" \
  --pseudo "$PSEUDO_V" --pseudo "$PSEUDO_V" --pseudo "$PSEUDO_V" --out "${RUNS}_clean" --imgsz 640 --batch 16 \
  --epochs 3 --lr0 0.0003 --init "$ROUND4_FIXED" --real --export-hw 352 640 --dynamic --boxes amodal \
  --export "$CLEAN_STUDENT"
EXPORT=${EXPORT:-models/carpose_det.onnx}
carpose-det-soup "$CLEAN_STUDENT" --weights 1 --operate-at 0.5 --export-hw 352 640 --dynamic \
  --out "$EXPORT"  # step 13: the shipped detector
carpose-det-int8 "$EXPORT" --calib "$SHARED/real_unlabelled" --count 256 --quiet \
  --out "$(dirname "$EXPORT")/carpose_det_int8.onnx"  # step 11, on step 13's file
# Step 14 (issue 42; not shipped): a larger detector grown from the shipped one. WIDEN=1 widens the shipped
# file to YOLO11s's width with the same boxes (carpose-det-widen, noise 0.001 to break the copies' symmetry) and
# fine-tunes it on step 13's first scene pair and the judged labels for WIDEN_EPOCHS epochs (a fixed schedule
# whose learning rate falls to 1 % at its end; about 24 min an epoch on 2 quiet cores, so the default 4 fit a
# session), every epoch scored on the real sources at the end. A run cut off by a session's end goes on with
# the same command from its last finished epoch (last.pt without det_train.json:
# ultralytics' resume, optimizer and LR schedule included; an --hours run cannot be resumed, ultralytics
# re-plans its epoch count to what fitted its time). On a GPU, scripts/gpu_train_det.sh is the long version.
# AP against hours for this and for the shipped network fine-tuned alike: docs/experiments/detector.md (issue 42).
if [ "${WIDEN:-0}" = 1 ]; then
  mkdir -p "${RUNS}_wide"
  [ -f "${RUNS}_wide/wide.onnx" ] || carpose-det-widen "$EXPORT" --out "${RUNS}_wide/wide.pt" \
    --export "${RUNS}_wide/wide.onnx" --noise 0.001
  resume=()
  [ -f "${RUNS}_widened/train/weights/last.pt" ] && resume=(--resume)
  [ -f "${RUNS}_widened/det_train.json" ] || carpose-train-det "$OUT/road7u.h5" "$OUT/wide7u.h5" \
    --pseudo "$PSEUDO_V" --pseudo "$PSEUDO_V" --pseudo "$PSEUDO_V" --imgsz 640 --batch 16 --lr0 0.0003 \
    --boxes amodal --epochs "${WIDEN_EPOCHS:-4}" --real --export-hw 352 640 --dynamic --init "${RUNS}_wide/wide.onnx" \
    --arch yolo11s.yaml --out "${RUNS}_widened" --export "$OUT/det_widened.onnx" "${resume[@]}"
fi
