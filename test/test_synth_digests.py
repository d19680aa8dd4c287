"""The synthetic-data generators' output, byte for byte.

The still-image generator (``slimyolo_ros.data.synth.generate``) and the flight generator
(``slimyolo_ros.data.flight.generate_flights``) write a few small datasets (several seeds, sizes and
options: ignored regions, no trees, large and tiny objects, parked crowds); the sha256 of every file they
write (images, annotations, the JSON summary) must equal the digests in test/synth_digests.json, recorded
from the generator before its rendering code was reorganised. A change to the renderer that moves a pixel,
an annotation or a random draw fails here, naming the files that differ.

The digests depend on numpy's random streams and float kernels and on OpenCV's drawing, resampling and JPEG
encoding, so they hold for the numpy and OpenCV versions and the CPU architecture recorded in the JSON file
(the venv pins them); with others the test skips with the reason (fails when CI=true). They must not depend
on the CPU model, so the generators run here with OpenCV's Intel IPP calls off: IPP picks its code by CPU
and its SSE4.2 and AVX2 code give different pixels (``OPENCV_IPP=sse42`` changed 5 of the 61 files), while
without IPP the same digests came out with numpy's AVX2 kernels, OpenCV's AVX/AVX2/FMA kernels and
libjpeg-turbo's SIMD code switched off (``NPY_DISABLE_CPU_FEATURES=X86_V3
OPENCV_CPU_DISABLE=AVX,AVX2,FMA3,FP16 JSIMD_FORCENONE=1``). Re-record only from a commit whose generator is
known to be right: ``python test/test_synth_digests.py --record``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import in_ci

REPO = Path(__file__).resolve().parents[1]
DIGESTS = Path(__file__).with_name("synth_digests.json")

FLIGHT = dict(size=(320, 240), world=800, car_length=14.0)
CASES: dict[str, tuple[str, dict]] = {
    "still_default": ("still", dict(n_images=4, size=(320, 256), seed=7)),
    "still_ignored": ("still", dict(n_images=4, size=(256, 192), seed=3, ignore_prob=1.0, objects=(5, 12))),
    "still_no_trees": ("still", dict(n_images=2, size=(192, 160), seed=11, trees=False, ignore_prob=0.0,
                                     jpeg_quality=80)),
    "still_large_objects": ("still", dict(n_images=3, size=(128, 128), seed=2, min_size=64, max_size=64,
                                          ignore_prob=1.0)),
    "still_tiny_objects": ("still", dict(n_images=2, size=(128, 128), seed=2, min_size=4, max_size=4,
                                         ignore_prob=1.0)),
    "flight_small": ("flight", dict(sequences=2, seed=5, frames=6, **FLIGHT)),
    "flight_parked": ("flight", dict(sequences=1, seed=2, frames=4, fps=5.0, parked=160, walkers=200,
                                     trees=0, jpeg_quality=85, **FLIGHT)),
    "flight_default_world": ("flight", dict(sequences=1, seed=9, frames=3, size=(256, 192))),
}


def versions() -> dict[str, str]:
    return {"numpy": np.__version__, "opencv": cv2.__version__, "machine": platform.machine()}


def generate_case(name: str, out: Path) -> dict[str, str]:
    """Run one case into ``out`` without IPP; {path relative to out: sha256} of every file written."""
    from slimyolo_ros.data.flight import generate_flights
    from slimyolo_ros.data.synth import generate

    kind, kw = CASES[name]
    ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        if kind == "still":
            generate(out, progress=False, **kw)
        else:
            generate_flights(out, progress=False, **kw)
    finally:
        cv2.ipp.setUseIPP(ipp)
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def recorded() -> dict:
    data = json.loads(DIGESTS.read_text())
    # also_checked: versions on which the same digests were generated and compared since (numpy 2.2.6, the
    # newest numpy for Python 3.10)
    if versions() not in [data["versions"], *data.get("also_checked", [])]:
        msg = (f"{DIGESTS.name} was recorded with {data['versions']}, this is {versions()}: the files may "
               "differ without any change to the generator")
        if in_ci():
            pytest.fail(msg + "; CI=true requires the recorded versions")
        pytest.skip(msg)
    return data["cases"]


@pytest.mark.parametrize("name", list(CASES))
def test_generator_output_is_byte_identical_to_the_recorded_digests(recorded, name, tmp_path):
    got = generate_case(name, tmp_path / name)
    want = recorded[name]
    assert sorted(got) == sorted(want), f"{name}: other files written"
    differ = [p for p in want if got[p] != want[p]]
    assert not differ, f"{name}: {len(differ)} of {len(want)} files differ, e.g. {differ[:5]}"


def record() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: generate_case(name, Path(tmp) / name) for name in CASES}
    DIGESTS.write_text(json.dumps({"versions": versions(), "cases": cases, "also_checked": []}, indent=1,
                                  sort_keys=True) + "\n")
    print(f"{DIGESTS}: {sum(len(c) for c in cases.values())} files in {len(cases)} cases, {versions()}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python test/test_synth_digests.py --record")
    sys.path.insert(0, str(REPO))
    record()
