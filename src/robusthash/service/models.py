"""The service's response models: what /openapi.json documents."""

from typing import Any, Optional

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: Any = Field(description="what went wrong, naming the input at fault (a list for validation errors)")


class RegisterOut(BaseModel):
    image_id: int
    status: str = Field(description='"added"; "updated" when the same bytes were registered before and hashes '
                                    'they lacked were added; "existing" when nothing was new')
    left_out: list[str] = Field(default_factory=list, description="methods whose hash was too weak to register "
                                                                  "(e.g. PDQ quality below 50), and why")


class MatchOut(BaseModel):
    image_id: int
    source: str = Field(description="the registered image's file name or path")
    metadata: dict[str, Any]
    distance: float = Field(description="normalised Hamming distance (NHD, 0..1), or the method's own distance")
    hamming: Optional[int] = Field(description="Hamming distance in bits")
    matched: bool = Field(description="the method's decision for this image")
    rule: str = Field(description="the rule that decided, with its numbers")
    quality: Optional[int] = Field(None, description="the registered hash's quality (PDQ)")


class MethodResultOut(BaseModel):
    query: str
    method: str
    matched: bool
    decision: str = Field(description='"match" or "no match"')
    refused: Optional[str] = Field(None, description="why the query cannot match anything: too little "
                                                     "information in it, or a hash below its quality floor")
    quality: Optional[int] = Field(None, description="the query hash's quality (PDQ)")
    matches: list[MatchOut] = Field(
        description="every image the method matches, and at least the k nearest; nearest first")


class IdentifiedOut(BaseModel):
    image_id: int
    source: str = Field(description="the registered original's file name or path")
    metadata: dict[str, Any]
    score: float = Field(description="the verification's inliers (the number of methods matching, where the "
                                     "geometry could not be checked)")
    identified: bool
    reason: str = Field(description="the evidence that decided, with its numbers")
    region: Optional[list[int]] = Field(None, description="[x0, y0, x1, y1]: where in the query it was found")
    evidence: dict[str, Any] = Field(description="each method's distance and decision, and the verification")


class QueryOut(BaseModel):
    query: str = Field(description="the uploaded file's name")
    verdict: str = Field(description='"match" (a copy of an original), "montage" (parts of several originals) '
                                     'or "no match": the identification engine (docs/identify.md)')
    matches: list[IdentifiedOut] = Field(description="the originals the verdict names, best first")
    refused: Optional[str] = Field(None, description="why the query cannot match anything (too little in it)")
    candidates: list[IdentifiedOut] = Field(description="every candidate checked, identified first")
    decision: str = Field(description='"match" when the verdict names an original (match or montage), else '
                                      '"no match"')
    matched_image_ids: list[int] = Field(description="the originals the verdict names, best first")
    results: list[MethodResultOut] = Field(description="each method's own result (details)")


class ExplainOut(BaseModel):
    image_id: int = Field(description="the registered original compared with")
    label: str = Field(description='"same" (only non-editorial changes), "edited" or "different"')
    probabilities: dict[str, float]
    heatmap: list[list[float]] = Field(description="7×7, row 0 at the top, over the original: how likely each "
                                                   "cell was edited")
    edited_cells: list[tuple[int, int]] = Field(description="(row, column) of the cells at or above the threshold")
    threshold: float = Field(description="the comparator's heatmap cut, chosen on train pairs (model card)")
    aligned: bool = Field(description="whether a homography took the query onto the original")
    flipped: bool
    inliers: int
    picture: Optional[str] = Field(None, description="PNG (base64): query, original and the heatmap over both")


class ImageOut(BaseModel):
    image_id: int
    digest: str = Field(description="SHA-256 of the registered file's bytes")
    source: str
    metadata: dict[str, Any]
    width: Optional[int]
    height: Optional[int]
    added_at: str


class RemovedOut(BaseModel):
    image_id: int
    status: str = Field(description='"removed"')


class HealthOut(BaseModel):
    status: str
    version: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route."""
    meaning = {
        401: "missing or wrong API key",
        404: "no such image, or no thumbnail for it",
        413: "request body over the upload limit",
        422: "invalid field, or an upload that is not a readable image (empty, corrupt, too many pixels)",
        429: "rate limit exceeded; see the Retry-After header",
    }
    return {code: {"model": ErrorOut, "description": meaning[code]} for code in codes}
