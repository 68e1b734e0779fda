"""Which network, at which strength, upscales one input: the ``model=auto`` route and ``denoise``.

Why two networks behind one route: fine-tuning on damaged inputs costs clean-input fidelity (a short
experiment lost 0.23 dB clean at x4), so clean files keep the fidelity network, while compressed or
noisy files go to the strength-conditioned network, told how damaged the file is (its JPEG quality, the
quantizer in its WebP, AVIF or HEIC header, the quality of a JPEG found in a lossless file's pixels, or its
measured noise). ``denoise`` overrides that strength, as Real-ESRGAN's ``-dn`` does. A fine JPEG of text or line
art (``TEXT_FIDELITY_QUALITY``) goes to the fidelity network too.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.catalog import AUTO, ModelInfo
from worker.engine.base import Condition
from worker.engine.registry import UnknownModel
from worker.engine.strength import QUANTIZER_RANGE
from worker.input_profile import LOSSY_NOISE_FLOOR_SIGMA, InputProfile

# JPEG quality from which a file whose flattest blocks read as strokes (``InputProfile.strokes``: a page of text, line
# art) and which has no noise of its own goes to the fidelity network: there the robust network's smoothing of the
# strokes costs more than the encoder's ringing. On rendered pages (DejaVu Sans, Sans Bold, Serif, Serif Italic, Sans
# Mono, Sans Condensed; 10, 12 and 16 px in an LR of 400x200, dark on light and light on dark, pages with a photo
# inset or a coloured heading; x2 and x4; docs/model.md, "Fine JPEGs of text"), the fidelity network minus the robust
# one at the quality's strength on the files read as strokes with luma at the lossy floor, mean (worst): q90 +0.17
# (-0.87), q92 +0.43 (-0.43), q93 +0.52 (-0.41), q94 +0.67 (-0.15), q95 +0.78 (-0.02) dB; bold, condensed,
# monospaced and 16 px text lost below 94. Clean training photos the rule takes (2 of 1,140 at q94 and at q95) gained
# 0.00-0.16 dB.
TEXT_FIDELITY_QUALITY = 94


@dataclass(frozen=True)
class Selection:
    """What ran, and why (shown in the job JSON as ``ran``)."""

    model: str
    strength: float | None
    reason: str
    profile: InputProfile

    @property
    def condition(self) -> Condition:
        """What the chosen network is told about the input: the strength, and the file's JPEG grid."""
        return Condition(self.strength, self.profile.jpeg_grid)

    def to_dict(self) -> dict:
        return {"model": self.model, "strength": self.strength, "reason": self.reason,
                "input": self.profile.to_dict()}


def ran_condition(ran: dict) -> Condition:
    """The condition a job ran with, read back from its ``ran`` record (``Selection.to_dict``): what the workers
    computing its other bands must use."""
    grid = ran.get("input", {}).get("jpeg_grid")
    return Condition(ran.get("strength"), tuple(grid) if grid is not None else None)


def _why(profile: InputProfile) -> str:
    noise = profile.measured_noise
    if profile.quantized:
        earlier = profile.earlier_jpeg_quality
        if profile.jpeg_quality:
            why = f"{profile.format} quality {profile.jpeg_quality}"
            why += f", saved again from a JPEG of quality {earlier}" if earlier is not None else ""
        elif earlier is not None:
            why = f"{profile.format} holding a decoded JPEG of quality {earlier}"
        elif profile.quantizer is not None:
            why = f"lossy {profile.format}, quantizer {profile.quantizer:.1f} of {QUANTIZER_RANGE[profile.format]}"
        else:
            why = f"lossy {profile.format}, quality not recorded"
        why += ", near-lossless" if profile.near_lossless else ""
        noise_decides = noise is not None and profile.strength > round(profile.quality_strength, 3)
        return f"{why}, {noise[0]} sigma {noise[1]:.1f}" if noise_decides else why
    kind, sigma = noise or ("noise", profile.noise_sigma)
    return f"{kind} sigma {sigma:.1f}"


def clean_text(profile: InputProfile) -> bool:
    """A JPEG of text or line art fine enough for the fidelity network (``TEXT_FIDELITY_QUALITY``): compressed (a
    near-lossless one goes there anyway), its luma reading at the lossy floor but read as strokes (a photo's flattest
    blocks often read as strokes too, 1.8..6.1, with its luma far under the floor: the robust network served those
    better), no noise of its own, and its quality (an earlier, coarser encode's where one is found in its pixels) at
    least the threshold."""
    quality = profile.damage_quality
    strokes = profile.strokes and profile.noise_sigma >= LOSSY_NOISE_FLOOR_SIGMA
    return (profile.compressed and strokes and not profile.noisy and quality is not None
            and quality >= TEXT_FIDELITY_QUALITY)


def select(requested: str, denoise: float | None, profile: InputProfile, catalog: dict[str, ModelInfo]) -> Selection:
    """Resolve a job's ``model`` and ``denoise`` (None = auto) for an input with this profile."""
    if requested not in catalog:
        raise UnknownModel(requested)
    if requested != AUTO:
        info = catalog[requested]
        if not info.conditioned:
            return Selection(requested, None, "asked for by name", profile)
        if denoise is not None:
            return Selection(requested, denoise, "asked for by name; denoise given", profile)
        why = f"strength from {_why(profile)}" if profile.damaged else f"lossless {profile.format}, no noise measured"
        return Selection(requested, profile.strength, f"asked for by name; {why}", profile)
    routes = catalog[AUTO].routes or {}
    if denoise is not None:
        if denoise > 0:
            return Selection(routes["robust"], denoise, f"denoise {denoise:g} asked", profile)
        return Selection(routes["fidelity"], None, "denoise 0 asked", profile)
    if clean_text(profile):
        return Selection(routes["fidelity"], None, f"{_why(profile)}, text/line art: strokes, not noise", profile)
    if profile.damaged:
        return Selection(routes["robust"], profile.strength, _why(profile), profile)
    kind = _why(profile) if profile.near_lossless else f"lossless {profile.format}"
    return Selection(routes["fidelity"], None, f"{kind}, no noise measured", profile)
