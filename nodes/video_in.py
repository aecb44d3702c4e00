"""Video in: a video file from the input folder as an IMAGE batch (LoadVideoFrames) or, encoded a few frames at
a time, as a LATENT batch (LoadVideoLatents). Thin layers over video_in/."""

import os

from .. import comfy_host
from ..video_in import (LoadOptions, MemoryPlan, VideoReadError, image_files, iter_frames, iter_images,
                        list_image_folders, list_videos, planned_frame_count, probe, read_audio, select_images)

# Peak bytes per colour value while loading an IMAGE batch: the decoded uint8 frames (1) and the float32
# batch made from them (4) are both alive until the last frame is copied.
IMAGE_BYTES_PER_VALUE = 5
# Frames the latent loader holds as RGB at once at most (one VAE call).
MAX_ENCODE_BATCH = 256


def _selection_inputs() -> dict:
    """The inputs both loaders share: which file, which frames, what size."""
    return {
        "video": (list_videos(comfy_host.input_directory()), {
            # web/video_upload.js adds the upload button and the preview (a flag of this pack's own: the
            # current frontend's "video_upload" would add a second button there and none in the 2024 one)
            "animatediff_video_upload": True,
            "tooltip": "A video file in ComfyUI's input folder (mp4, webm, mkv, mov, avi, gif, ...): upload one "
                       "with 'choose video to upload' below, or copy it there and refresh. The node shows it."}),
        "force_rate": ("FLOAT", {
            "default": 0.0, "min": 0.0, "max": 240.0, "step": 0.5,
            "tooltip": "Re-time the video to this many frames per second before selecting frames (frames are "
                       "dropped or repeated, the speed stays). 0 keeps the video's own frames."}),
        "frame_load_cap": ("INT", {
            "default": 16, "min": 0, "max": 100000, "step": 1,
            "tooltip": "At most this many frames are loaded (0 = all). Without context windows the motion "
                       "module's limit applies (16-32)."}),
        "skip_first_frames": ("INT", {
            "default": 0, "min": 0, "max": 1000000, "step": 1,
            "tooltip": "Frames dropped from the start (counted after force_rate)."}),
        "select_every_nth": ("INT", {
            "default": 1, "min": 1, "max": 1000, "step": 1,
            "tooltip": "Keep one frame in n (1 = every frame), after skipping."}),
        "custom_width": ("INT", {
            "default": 0, "min": 0, "max": 8192, "step": 8,
            "tooltip": "Output width in pixels; 0 = from the video, or from custom_height keeping the aspect "
                       "ratio."}),
        "custom_height": ("INT", {
            "default": 0, "min": 0, "max": 8192, "step": 8,
            "tooltip": "Output height in pixels; 0 = from the video, or from custom_width keeping the aspect "
                       "ratio."}),
        "multiple_of_8": ("BOOLEAN", {
            "default": True,
            "tooltip": "Round width and height to the nearest multiple of 8 (what the VAE needs). Off keeps "
                       "the exact size."}),
    }


_AUDIO_TOOLTIP = ("The sound under the loaded frames (from the first loaded frame for as long as they play at "
                  "frame_rate), for Video Combine's audio input; None when the file has no audio stream.")


class _VideoFile:
    """Checks and change detection of the `video` input, shared by both loaders."""
    CATEGORY = "AnimateDiff"

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        return cls._check_file(video)

    @classmethod
    def IS_CHANGED(cls, video, **_):
        return cls._file_stamp(video)

    @classmethod
    def _check_file(cls, video):
        """True, or why the file `video` names cannot be loaded (checked when the prompt is queued)."""
        try:
            path = cls._resolve(video)
        except ValueError as e:
            return str(e)
        if not os.path.isfile(path):
            return cls._missing(video)
        try:
            probe(path)
        except VideoReadError as e:
            return str(e)
        return True

    @staticmethod
    def _missing(video) -> str:
        return (f"video '{video}' is not in ComfyUI's input folder ({comfy_host.input_directory()}): copy or "
                f"upload it there, then pick it from the list")

    @classmethod
    def _file_stamp(cls, video) -> str:
        """Changes when the file changes, so the host runs the node again."""
        try:
            stat = os.stat(cls._resolve(video))
        except (OSError, ValueError):
            return ""
        return f"{stat.st_mtime_ns}:{stat.st_size}"

    @staticmethod
    def _resolve(video) -> str:
        """The file the `video` input names (in the input folder)."""
        return comfy_host.input_file_path(video)

    @classmethod
    def _open(cls, video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width, custom_height,
              multiple_of_8, bytes_per_value, what, alternative=""):
        """(path, selection, frames generator), refused before decoding when the planned frames cannot fit."""
        options = LoadOptions(frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                              select_every_nth=select_every_nth, force_rate=force_rate, width=custom_width,
                              height=custom_height, multiple_of=8 if multiple_of_8 else 1)
        path = cls._resolve(video)
        selection, frames = iter_frames(path, options)
        planned = planned_frame_count(selection.source, options)
        if planned:
            try:
                MemoryPlan(planned, selection.width, selection.height, bytes_per_value, what).check(
                    comfy_host.free_memory_bytes(), os.path.basename(path), alternative)
            except VideoReadError:
                frames.close()
                raise
        return path, selection, frames

    @staticmethod
    def _audio(path, selection):
        sound = read_audio(path, selection.start_time, selection.duration, selection.first_frame_time)
        if sound is None:
            return None
        import torch
        samples, rate = sound
        return {"waveform": torch.from_numpy(samples).unsqueeze(0), "sample_rate": rate}


class LoadVideoFrames(_VideoFile):
    DESCRIPTION = ("Decodes a video from ComfyUI's input folder into an IMAGE batch (one image per frame), for "
                   "video-to-video: pick which frames, re-time, resize to a multiple of 8. Refuses, before "
                   "decoding, a selection that would not fit in memory.")
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT", "AUDIO", "INT", "INT")
    RETURN_NAMES = ("images", "frame_count", "frame_rate", "audio", "width", "height")
    OUTPUT_TOOLTIPS = ("The selected frames, RGB.",
                       "How many frames were loaded.",
                       "Frames per second at which these frames play at the video's own speed: force_rate (or the "
                       "video's rate) divided by select_every_nth. Connect it to Video Combine's frame_rate.",
                       _AUDIO_TOOLTIP,
                       "Width of the loaded frames in pixels.",
                       "Height of the loaded frames in pixels.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": _selection_inputs()}

    def load(self, video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
             custom_height, multiple_of_8):
        return self._load(video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
                          custom_height, multiple_of_8)

    def _load(self, video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
              custom_height, multiple_of_8):
        path, selection, frames = self._open(
            video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width, custom_height,
            multiple_of_8, IMAGE_BYTES_PER_VALUE, "as an IMAGE batch",
            "Load Video (latents), which never holds the whole clip as images")
        images = _as_image_batch(frames, selection.height, selection.width)
        return (images, selection.frame_count, float(selection.frame_rate), self._audio(path, selection),
                selection.width, selection.height)


class LoadVideoPath(LoadVideoFrames):
    DESCRIPTION = ("Load Video (frames) from a path outside the input folder, for servers whose owner allows it: "
                   "only files inside the folders named by the environment variable ANIMATEDIFF_VIDEO_DIRS can "
                   "be read (off when it is unset).")

    @classmethod
    def INPUT_TYPES(cls):
        inputs = _selection_inputs()
        del inputs["video"]
        return {"required": {
            "path": ("STRING", {
                "default": "", "tooltip": "Absolute path of a video file inside a folder the server's owner "
                                          "allowed (ANIMATEDIFF_VIDEO_DIRS)."}),
            **inputs}}

    @staticmethod
    def _resolve(video) -> str:
        return comfy_host.allowed_video_path(video)

    @staticmethod
    def _missing(video) -> str:
        return f"video '{video}' not found"

    @classmethod
    def VALIDATE_INPUTS(cls, path):
        return cls._check_file(path)

    @classmethod
    def IS_CHANGED(cls, path, **_):
        return cls._file_stamp(path)

    def load(self, path, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
             custom_height, multiple_of_8):
        return self._load(path, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
                          custom_height, multiple_of_8)


class LoadVideoLatents(_VideoFile):
    DESCRIPTION = ("Decodes a video from ComfyUI's input folder and encodes it with the VAE a few frames at a "
                   "time into a LATENT batch, for video-to-video on long clips: the clip is never held whole as "
                   "images (memory flat in the frame count apart from the small latents). The same frame "
                   "selection as Load Video (frames); the result equals Load Video (frames) -> VAE Encode.")
    RETURN_TYPES = ("LATENT", "INT", "FLOAT", "AUDIO", "INT", "INT")
    RETURN_NAMES = ("latent", "frame_count", "frame_rate", "audio", "width", "height")
    OUTPUT_TOOLTIPS = ("The selected frames encoded by the VAE: one latent per frame, for a sampler's "
                       "latent_image (denoise below 1 for video to video).",
                       "How many frames were loaded.",
                       "Frames per second at which these frames play at the video's own speed. Connect it to "
                       "Video Combine's frame_rate.",
                       _AUDIO_TOOLTIP,
                       "Width of the loaded frames in pixels.",
                       "Height of the loaded frames in pixels.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = _selection_inputs()
        inputs["vae"] = ("VAE", {"tooltip": "The VAE that encodes the frames (the checkpoint's)."})
        inputs["encode_batch"] = ("INT", {
            "default": 16, "min": 1, "max": MAX_ENCODE_BATCH, "step": 1,
            "tooltip": "Frames decoded and encoded per VAE call: the most frames held as images at once. "
                       "Lower it if the VAE runs out of memory."})
        return {"required": inputs}

    def load(self, video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
             custom_height, multiple_of_8, vae, encode_batch):
        import torch

        if isinstance(encode_batch, bool) or not isinstance(encode_batch, int) \
                or not 1 <= encode_batch <= MAX_ENCODE_BATCH:
            raise ValueError(f"encode_batch is {encode_batch!r}; expected a whole number from 1 to "
                             f"{MAX_ENCODE_BATCH} (frames per VAE call)")
        # What stays for the whole clip is the latents: 4 values per 8x8 pixels, float32 (1/6 byte per value).
        path, selection, frames = self._open(
            video, force_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width, custom_height,
            multiple_of_8, 4 * 4 / (8 * 8 * 3), "as latents")
        encode = comfy_host.image_encoder(vae)
        batch = torch.empty((encode_batch, selection.height, selection.width, 3), dtype=torch.float32)
        latents, filled = [], 0
        for frame in frames:
            batch[filled] = torch.from_numpy(frame)
            filled += 1
            if filled == encode_batch:
                latents.append(encode(batch.div(255.0)).cpu())
                filled = 0
        if filled:
            latents.append(encode(batch[:filled].div(255.0)).cpu())
        samples = torch.cat(latents) if len(latents) > 1 else latents[0]
        return ({"samples": samples}, selection.frame_count, float(selection.frame_rate),
                self._audio(path, selection), selection.width, selection.height)



def _as_image_batch(frames, height, width):
    """uint8 frames -> one float32 IMAGE batch in [0, 1], copied frame by frame (no second uint8 copy)."""
    import torch
    decoded = list(frames)
    images = torch.empty((len(decoded), height, width, 3), dtype=torch.float32)
    for i, frame in enumerate(decoded):
        images[i] = torch.from_numpy(frame)
    decoded.clear()
    return images.div_(255.0)


class LoadImageFolder:
    DESCRIPTION = ("Loads a folder of images (a rendered or exported frame sequence) from ComfyUI's input folder "
                   "as an IMAGE batch, in natural order (frame2 before frame10), with the same frame selection "
                   "and resizing as Load Video (frames).")
    CATEGORY = "AnimateDiff"
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT", "INT", "INT")
    RETURN_NAMES = ("images", "frame_count", "frame_rate", "width", "height")
    OUTPUT_TOOLTIPS = ("The selected images, RGB, all at one size.",
                       "How many images were loaded.",
                       "frame_rate divided by select_every_nth: the rate at which the selected images play at "
                       "the sequence's own speed. Connect it to Video Combine's frame_rate.",
                       "Width of the loaded images in pixels.",
                       "Height of the loaded images in pixels.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = _selection_inputs()
        del inputs["video"], inputs["force_rate"]
        return {"required": {
            "folder": (list_image_folders(comfy_host.input_directory()), {
                "tooltip": "A folder inside ComfyUI's input folder holding the frames as image files (png, jpg, "
                           "webp, bmp, tif), sorted naturally by name."}),
            "frame_rate": ("FLOAT", {
                "default": 8.0, "min": 0.1, "max": 240.0, "step": 0.5,
                "tooltip": "Frames per second of the sequence (images have none of their own)."}),
            **inputs}}

    @classmethod
    def VALIDATE_INPUTS(cls, folder):
        try:
            path = comfy_host.input_file_path(folder)
        except ValueError as e:
            return str(e)
        if not os.path.isdir(path):
            return (f"image folder '{folder}' is not in ComfyUI's input folder ({comfy_host.input_directory()}): "
                    f"copy it there, then pick it from the list")
        return True

    @classmethod
    def IS_CHANGED(cls, folder, **_):
        try:
            path = comfy_host.input_file_path(folder)
            return ";".join(f"{n}:{os.stat(os.path.join(path, n)).st_mtime_ns}" for n in image_files(path))
        except (OSError, ValueError):
            return ""

    def load(self, folder, frame_rate, frame_load_cap, skip_first_frames, select_every_nth, custom_width,
             custom_height, multiple_of_8):
        import math
        if isinstance(frame_rate, bool) or not isinstance(frame_rate, (int, float)) \
                or not math.isfinite(frame_rate) or not 0.1 <= frame_rate <= 240:
            raise ValueError(f"frame_rate is {frame_rate!r}; expected a number of frames per second from 0.1 to 240")
        options = LoadOptions(frame_load_cap=frame_load_cap, skip_first_frames=skip_first_frames,
                              select_every_nth=select_every_nth, width=custom_width, height=custom_height,
                              multiple_of=8 if multiple_of_8 else 1)
        sequence = select_images(comfy_host.input_file_path(folder), options)
        MemoryPlan(sequence.frame_count, sequence.width, sequence.height, IMAGE_BYTES_PER_VALUE,
                   "as an IMAGE batch").check(comfy_host.free_memory_bytes(), folder)
        images = _as_image_batch(iter_images(sequence), sequence.height, sequence.width)
        return (images, sequence.frame_count, float(frame_rate) / select_every_nth, sequence.width, sequence.height)
