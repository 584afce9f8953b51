"""sana-sprint for Python: SANA-Sprint text-to-image through libsana_sprint's C API (docs/EMBEDDING.md).

    from sana_sprint import SanaSprintPipeline
    pipe = SanaSprintPipeline.from_pretrained("models/sana-sprint-shapes", dtype="bf16")
    image = pipe("two red circles above a blue square", num_inference_steps=2, seed=0).images[0]
"""
from ._capi import SanaSprintCancelled, SanaSprintError
from .pipeline import RawImage, SanaSprintPipeline, SanaSprintPipelineOutput


def version():
    """The library's version ("MAJOR.MINOR.PATCH")."""
    from ._capi import library
    return library().sana_version().decode()


__all__ = ["SanaSprintPipeline", "SanaSprintPipelineOutput", "SanaSprintError", "SanaSprintCancelled", "RawImage",
           "version"]
