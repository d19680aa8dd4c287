"""What a replay leaves for people: annotated frames (detections over the ground truth; tracks with ids
and trails), the replay recorded as a bag, and the readable text of a report."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import cv2

from slimyolo_ros.bag import msgs
from slimyolo_ros.bag.layout import storage_path
from slimyolo_ros.bag.score import Run, read_message, read_tracks
from slimyolo_ros.bag.source import Source, by_sequence
from slimyolo_ros.bag.types import DETECTION2D_ARRAY, BagError, typestore
from slimyolo_ros.io_utils import atomic_write_bytes
from slimyolo_ros.ros.detections import ClassIndex, to_array

log = logging.getLogger(__name__)


def annotate_detections(out: Path, keep: dict, answers: dict, gt: dict, names: list[str],
              min_score: float) -> list[str]:
    """A few frames with the node's boxes drawn (detect/draw.py) over the ground truth (thin white), PNG."""
    from slimyolo_ros.detect.draw import draw_detections, write_png

    ts = typestore()
    paths = []
    classes = ClassIndex(names)
    for stamp, (raw, typename) in sorted(keep.items()):
        try:
            img = msgs.decode_image(ts.deserialize_cdr(raw, typename), typename)
        except Exception as exc:  # a frame we cannot show must not lose the report
            log.warning("annotated frame %d: %s", stamp, exc)
            continue
        if stamp in gt:
            for x1, y1, x2, y2 in gt[stamp][0].round().astype(int).tolist():
                cv2.rectangle(img, (x1, y1), (x2, y2), (255, 255, 255), 1)
        if stamp in answers:
            det = to_array(read_message(answers[stamp][1]), classes)
            img = draw_detections(img, det[det[:, 4] >= min_score], classes.names)
        else:
            cv2.putText(img, "dropped: no answer", (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (0, 0, 255), 2)
        paths.append(str(write_png(out / f"frame_{stamp}.png", img)))
    return paths


def annotate_tracks(out: Path, run: Run, src: Source, names: list[str], trail: int = 15) -> list[str]:
    """The kept frames with the tracker's boxes, ids and each track's recent path (``draw_tracks``), JPEG.
    Trails follow every answered frame of the sequence, not only the drawn ones."""
    from slimyolo_ros.detect.draw import TrailHistory, draw_tracks

    ts = typestore()
    paths = []
    classes = ClassIndex(names)
    for seq, frames in by_sequence(run.frames, src.sequences):
        history = TrailHistory(trail)
        for f in frames:
            if f.stamp not in run.tracks:
                continue
            found = read_tracks(run.tracks[f.stamp][1])
            trails = history.update(found.boxes, found.ids)
            if f.stamp not in run.keep:
                continue
            raw, typename = run.keep[f.stamp]
            try:
                img = msgs.decode_image(ts.deserialize_cdr(raw, typename), typename)
            except Exception as exc:  # a frame we cannot show must not lose the report
                log.warning("annotated frame %d: %s", f.stamp, exc)
                continue
            img = draw_tracks(img, found.boxes, found.ids, classes.indices(found.names), classes.names,
                              trails)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                out.mkdir(parents=True, exist_ok=True)
                paths.append(str(atomic_write_bytes(out / f"{seq}_{f.index:06d}.jpg", buf.tobytes())))
    return paths


def record(dest: Path, bag: Path, frames, published, outputs: dict[str, dict]) -> Path:
    """The replayed images, the ground truth and the nodes' answers (``outputs``: topic -> answers by
    stamp, each logged at its image's bag time plus the measured latency) as one bag in the source bag's
    storage format."""
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    dest = Path(dest)
    if dest.exists():
        raise BagError(f"--record {dest}: exists already; remove it or choose another path")
    ts = typestore()
    replayed = {f.stamp: f for f in frames}
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    tmp = tmp_root / dest.name
    try:
        with Reader(storage_path(bag)) as src:
            files = [str(f.get("path", "")) for f in getattr(src.storage, "files", [])] or \
                [storage_path(bag).name]
            storage = StoragePlugin.SQLITE3 if any(f.endswith(".db3") for f in files) else StoragePlugin.MCAP
            with Writer(tmp, version=Writer.VERSION_LATEST, storage_plugin=storage) as w:
                conns = {}
                for c in src.connections:
                    if c.topic not in conns:
                        digest = c.digest or type_hash(c.msgtype, c.msgdef.data)
                        conns[c.topic] = w.add_connection(c.topic, c.msgtype, msgdef=c.msgdef.data,
                                                          rihs01=digest)
                out_conns = [(w.add_connection(topic, DETECTION2D_ARRAY, typestore=ts), got)
                             for topic, got in outputs.items()]
                for c, t, raw in src.messages():
                    w.write(conns[c.topic], t, raw)
                for out_conn, got in out_conns:
                    for stamp, f in replayed.items():
                        if stamp in got:
                            lat_ns = int((got[stamp][0] - published[stamp]) * 1e9)
                            w.write(out_conn, f.log_ns + max(lat_ns, 0), got[stamp][1])
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    return dest


def type_hash(msgtype: str, msgdef: str) -> str:
    """The RIHS01 type hash of a recorded message definition: bags recorded before ROS 2 Iron (Humble's)
    store none, and a bag written for Iron and later needs one per topic."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.EMPTY)
    try:
        store.register(get_types_from_msg(msgdef, msgtype))
        return store.hash_rihs01(msgtype)
    except Exception as exc:  # rosbags raises several types for definitions it cannot parse
        raise BagError(f"topic type {msgtype}: its recorded definition does not parse ({exc})") from exc


def format_report(r: dict) -> str:
    def ms(v):
        return "-" if v is None else f"{v:.1f} ms"

    mode = r["mode"] if r["rate"] is None else f"{r['mode']}, rate {r['rate']:g}x"
    lines = [f"bag {r['bag']} ({mode})",
             f"  frames: {r['frames']} published, {r['answered']} answered, {r['dropped']} dropped, "
             f"{r['frames_with_detections']} with detections, {r['skipped']} skipped"]
    if r.get("map50") is not None:
        lines.append(f"  mAP@0.5 {r['map50']:.4f}   mAP@0.5:0.95 {r['map']:.4f}   "
                     f"({r['frames_scored']} frames scored)")
    else:
        lines.append("  mAP: n/a (no ground truth for the answered frames)")
    if r.get("ground_truth_file"):
        lines.extend(_format_gt_file(r["ground_truth_file"]))
    lat = r["latency_ms"]
    lines.append(f"  latency publish->detections: p50 {ms(lat['p50'])}, p95 {ms(lat['p95'])}, "
                 f"p99 {ms(lat['p99'])}; throughput {r['fps']:.1f} fps")
    per_frame = (r.get("detections_per_frame") or {}).get("all") or {}
    if per_frame.get("mean") is not None:
        lines.append(f"  detections per answered frame: mean {per_frame['mean']:.2f}, max {per_frame['max']}"
                     + (f"; over time: {r['timeline']['png']}" if r.get("timeline") else ""))
    classes = sorted(set(r["detections_per_class"]) | set(r["ground_truth_per_class"]))
    if classes:
        lines.append(f"  {'class':<16}{'detections':>11}{'truth':>7}{'AP@0.5':>8}")
        for c in classes:
            ap = r["per_class"].get(c, {}).get("ap50")
            lines.append(f"  {c:<16}{r['detections_per_class'].get(c, 0):>11}"
                         f"{r['ground_truth_per_class'].get(c, 0):>7}{'-' if ap is None else f'{ap:.3f}':>8}")
    if r.get("tracking"):
        lines.extend(_format_tracking(r["tracking"]))
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    if r.get("annotated"):
        lines.append(f"  annotated frames: {Path(r['annotated'][0]).parent}/ ({len(r['annotated'])} PNG)")
    if r.get("record"):
        lines.append(f"  recorded: {r['record']}")
    if r.get("report"):
        lines.append(f"  report: {r['report']}")
    return "\n".join(lines)


def _format_gt_file(g: dict) -> list[str]:
    """How the annotation file's frames met the bag's images, and why the others did not."""
    lines = [f"  ground truth: {g['file']} ({g['format']}, matched by {g['match']}): {g['matched']} of "
             f"{g['ground_truth_frames']} annotated frames matched to {g['bag_frames']} bag images"]
    for reason, n in g["ground_truth_unmatched"].items():
        lines.append(f"    {n} annotated frame(s) not matched: {reason}")
    for reason, n in g["bag_frames_without_ground_truth"].items():
        lines.append(f"    {n} bag image(s) without ground truth: {reason}")
    return lines


def _format_tracking(t: dict) -> list[str]:
    from slimyolo_ros.evaluate.mot import format_mot

    lat = t["latency_ms"]
    p50 = "-" if lat["p50"] is None else f"{lat['p50']:.1f} ms"
    lines = [f"  tracking (track_node): {t['answered']} of {t['frames']} frames answered, "
             f"{t['tracks']} track ids; latency publish->tracks p50 {p50}"]
    if t.get("overall"):
        o = t["overall"]
        lines.append(f"  HOTA {100 * o['HOTA']:.1f}   MOTA {100 * o['MOTA']:.1f}   "
                     f"IDF1 {100 * o['IDF1']:.1f}   ID switches {o['IDSW']}   "
                     f"({t['frames_scored']} frames scored, {len(t['sequences'])} sequence(s))")
        lines.extend("    " + ln for ln in format_mot(t).splitlines())
    else:
        lines.append("  MOT metrics: n/a (no ground truth with target ids for the answered frames)")
    if t.get("annotated"):
        lines.append(f"  annotated tracks: {Path(t['annotated'][0]).parent}/ ({len(t['annotated'])} JPEG)")
    return lines


def format_track_report(r: dict) -> str:
    """The readable summary of :func:`replay_track`: one block per mode."""
    conf = r["detector_conf_threshold"]
    lines = [f"bag eval --track {r['bag']} (detector conf_threshold {conf['value']:g}, from {conf['from']})"]
    for mode in ("lockstep", "realtime"):
        if r.get(mode):
            lines += ["", f"[{mode}]", format_report(r[mode])]
    if r.get("report"):
        lines += ["", f"report: {r['report']}"]
    return "\n".join(lines)
