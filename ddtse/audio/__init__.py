"""Audio I/O, resampling, the compressed complex spectrogram, and chunked processing."""
from ddtse.audio.io import audio_info, load_audio, resample, save_audio  # noqa: F401
