"""A folder of images as the frames of a clip (pure: Pillow and numpy, no ComfyUI).

Files are ordered naturally (``frame2.png`` before ``frame10.png``), then selected as a video's frames are:
``skip_first_frames``, ``select_every_nth``, ``frame_load_cap``; every frame is resized to one size (the
first selected image's, or the wanted one) and rounded to a multiple.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from .reader import LoadOptions, MemoryPlan, VideoReadError, target_size

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def natural_key(name: str):
    """Sort key: digit runs compare as numbers, the rest case-insensitively."""
    return [(0, int(part), part) if part.isdigit() else (1, part.lower(), part)
            for part in re.split(r"(\d+)", name) if part]


def list_image_folders(root: str) -> list[str]:
    """Folders directly inside ``root`` holding at least one image, sorted naturally; [] when missing."""
    try:
        names = os.listdir(root)
    except OSError:
        return []
    return sorted((n for n in names if not n.startswith(".") and os.path.isdir(os.path.join(root, n))
                   and image_files(os.path.join(root, n))), key=natural_key)


def image_files(folder: str) -> list[str]:
    """Image file names directly inside ``folder``, in natural order."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted((n for n in names if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
                   and os.path.isfile(os.path.join(folder, n))), key=natural_key)


@dataclass
class ImageSequence:
    folder: str
    names: list            # the selected files, in order
    width: int
    height: int

    @property
    def frame_count(self) -> int:
        return len(self.names)


def select_images(folder: str, options: LoadOptions) -> ImageSequence:
    """Which files ``options`` select and the size they will have (reads only the first one's header).
    ``force_rate`` has no meaning for images and must be 0."""
    options.check()
    label = os.path.basename(os.path.normpath(folder))
    if options.force_rate:
        raise VideoReadError("force_rate does not apply to a folder of images (they have no frame rate); set it "
                             "to 0 and give frame_rate instead")
    if not os.path.isdir(folder):
        raise VideoReadError(f"image folder '{label}' not found ({folder})")
    names = image_files(folder)
    if not names:
        raise VideoReadError(f"image folder '{label}' holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    selected = names[options.skip_first_frames::options.select_every_nth]
    if options.frame_load_cap:
        selected = selected[:options.frame_load_cap]
    if not selected:
        raise VideoReadError(f"no images left from folder '{label}': it has {len(names)}, and skip_first_frames="
                             f"{options.skip_first_frames} skips them all")
    from PIL import Image
    first = os.path.join(folder, selected[0])
    try:
        with Image.open(first) as image:
            width, height = image.size
    except Exception as e:  # Pillow raises many kinds for a file that is not an image
        raise VideoReadError(f"cannot read image '{selected[0]}' in folder '{label}': {e}") from None
    width, height = target_size(width, height, options.width, options.height, options.multiple_of)
    return ImageSequence(folder=folder, names=selected, width=width, height=height)


def memory_plan(sequence: ImageSequence, bytes_per_value: float, what: str) -> MemoryPlan:
    return MemoryPlan(sequence.frame_count, sequence.width, sequence.height, bytes_per_value, what)


def iter_images(sequence: ImageSequence):
    """Each selected image as (height, width, 3) uint8 RGB at the sequence's size (EXIF orientation
    applied, transparency dropped). Raises VideoReadError naming a file that cannot be read."""
    from PIL import Image, ImageOps
    label = os.path.basename(os.path.normpath(sequence.folder))
    for name in sequence.names:
        try:
            with Image.open(os.path.join(sequence.folder, name)) as image:
                image = ImageOps.exif_transpose(image).convert("RGB")
                if image.size != (sequence.width, sequence.height):
                    smaller = image.width > sequence.width
                    image = image.resize((sequence.width, sequence.height),
                                         Image.Resampling.BOX if smaller else Image.Resampling.BICUBIC)
                yield np.array(image, dtype=np.uint8)  # writable: torch copies it without a warning
        except VideoReadError:
            raise
        except Exception as e:
            raise VideoReadError(f"cannot read image '{name}' in folder '{label}': {e}") from None
